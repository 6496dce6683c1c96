"""What MLflow's UI shows of the project's experiments: each is a model-training experiment (tag
mlflow.experimentKind) with a one-line description (tag mlflow.note.content), set by the sweep
(steps.main) and by reproduce when they create an experiment, added to one that lacks them, and
never put over a kind or description already there. Real SQLite stores."""

from __future__ import annotations

import re
import threading
from pathlib import Path

import mlflow
import pytest
from mlflow.exceptions import MlflowException

from madness import describe
from madness import names as n
from madness.model import ARCHITECTURES
from steps import main as sweep_step
from steps import reproduce as reproduce_step

LRS = ["0.001", "0.01", "0.1"]


def tags_of(experiment_id: str) -> dict[str, str]:
    return mlflow.MlflowClient().get_experiment(experiment_id).tags


def ui_bundle() -> str:
    """The JavaScript of the installed MLflow UI (its main bundle)."""
    folder = Path(mlflow.__file__).parent / "server" / "js" / "build" / "static" / "js"
    (main,) = folder.glob("main.*.js")
    return main.read_text(encoding="utf-8")


# --- the names are MLflow's own ---


def test_the_kind_tag_and_value_are_those_of_mlflows_ui():
    bundle = ui_bundle()  # the tag is looked up by its key; the kinds are an enum of string values
    assert '"mlflow.experimentKind"===e.key' in bundle
    assert re.search(r'\bCUSTOM_MODEL_DEVELOPMENT="custom_model_development"', bundle)
    assert n.TAG_EXPERIMENT_KIND == "mlflow.experimentKind"
    assert n.EXPERIMENT_KIND_TRAINING == "custom_model_development"


def test_the_description_tag_is_mlflows_note():
    from mlflow.utils.mlflow_tags import MLFLOW_RUN_NOTE

    assert n.TAG_DESCRIPTION == MLFLOW_RUN_NOTE == "mlflow.note.content"


# --- the words ---


@pytest.mark.parametrize("model", list(ARCHITECTURES))
def test_a_model_description_names_its_network_rates_and_epochs(model):
    widths = "-".join(map(str, ARCHITECTURES[model]))
    assert describe.model_description(model, LRS, "100") == (
        f"Fabric Madness: the {model} network ({widths} relu, sigmoid out) trained at learning rates "
        "0.001, 0.01, 0.1 for 100 epochs; one run per rate, scored by Brier (lower is better)"
    )


def test_one_rate_and_one_epoch_are_singular():
    assert "trained at learning rate 0.01 for 1 epoch;" in describe.model_description("small", ["0.01"], "1")


def test_an_unknown_model_is_named_without_a_shape():
    assert describe.model_description("huge", ["0.01"], "2").startswith("Fabric Madness: the huge network trained at")


def test_the_sweep_description_names_the_grid_and_the_model_experiments():
    text = describe.sweep_description("fm", ["small", "large"], LRS, "100")
    assert "the small, large networks at learning rates 0.001, 0.01, 0.1 for 100 epochs" in text
    assert text.endswith("one run per pair in fm_small, fm_large")
    assert "\n" not in text
    assert "the small network at learning rate 0.01 for 2 epochs" in describe.sweep_description(
        "fm", ["small"], ["0.01"], "2"
    )


def test_the_network_words_give_its_widths_and_the_activations_build_uses():
    assert describe.network_words("large") == "the large network (128-64-64 relu, sigmoid out)"


# --- the sweep's experiments in a real store ---


def test_a_new_model_experiment_is_a_training_experiment_with_its_description(tracking):
    description = describe.model_description("medium", LRS, "100")
    experiment = sweep_step.experiment_id(mlflow.MlflowClient(), "fm_medium", description)
    tags = tags_of(experiment)
    assert tags["mlflow.experimentKind"] == "custom_model_development"
    assert tags["mlflow.note.content"] == description


def test_an_existing_experiment_without_the_tags_gets_both(tracking):
    client = mlflow.MlflowClient()
    existing = client.create_experiment("fm_small")
    assert sweep_step.experiment_id(client, "fm_small", "the small one") == existing
    assert tags_of(existing)[n.TAG_EXPERIMENT_KIND] == n.EXPERIMENT_KIND_TRAINING
    assert tags_of(existing)[n.TAG_DESCRIPTION] == "the small one"


def test_a_users_own_description_is_kept_and_the_kind_added(tracking):
    client = mlflow.MlflowClient()
    existing = client.create_experiment("fm_large", tags={n.TAG_DESCRIPTION: "my notes on the large net"})
    sweep_step.experiment_id(client, "fm_large", describe.model_description("large", LRS, "100"))
    assert tags_of(existing)[n.TAG_DESCRIPTION] == "my notes on the large net"
    assert tags_of(existing)[n.TAG_EXPERIMENT_KIND] == n.EXPERIMENT_KIND_TRAINING


def test_a_kind_already_set_is_kept(tracking):
    client = mlflow.MlflowClient()
    existing = client.create_experiment("fm_small", tags={n.TAG_EXPERIMENT_KIND: "classification"})
    sweep_step.experiment_id(client, "fm_small", "the small one")
    assert tags_of(existing)[n.TAG_EXPERIMENT_KIND] == "classification"


def test_a_labelled_experiment_is_not_written_again(tracking):
    client = mlflow.MlflowClient()
    first = sweep_step.experiment_id(client, "fm_small", "the small one")
    writes = []

    class Counting:
        def __getattr__(self, name):
            return getattr(client, name)

        def set_experiment_tag(self, *args):
            writes.append(args)
            return client.set_experiment_tag(*args)

    assert sweep_step.experiment_id(Counting(), "fm_small", "a later grid") == first
    assert writes == []
    assert tags_of(first)[n.TAG_DESCRIPTION] == "the small one"


def test_the_sweep_runs_experiment_gets_the_kind_only(tracking):
    client = mlflow.MlflowClient()
    existing = client.create_experiment("from mlflow run --experiment-name")
    sweep_step.label_experiment(client, client.get_experiment(existing), description=None)
    assert tags_of(existing)[n.TAG_EXPERIMENT_KIND] == n.EXPERIMENT_KIND_TRAINING
    assert n.TAG_DESCRIPTION not in tags_of(existing)


def test_a_tag_another_sweep_wrote_first_is_not_a_failure(tracking):
    """The other sweep's write lands between this one's read and write, and the store refuses this one."""
    client = mlflow.MlflowClient()
    existing = client.create_experiment("fm_medium")
    read_before = client.get_experiment(existing)

    class Racing:
        raced = False

        def __getattr__(self, name):
            return getattr(client, name)

        def set_experiment_tag(self, experiment_id, key, value):
            if not self.raced:
                self.raced = True
                client.set_experiment_tag(experiment_id, n.TAG_EXPERIMENT_KIND, n.EXPERIMENT_KIND_TRAINING)
                client.set_experiment_tag(experiment_id, n.TAG_DESCRIPTION, "the other sweep's grid")
                raise MlflowException("UNIQUE constraint failed: experiment_tags.key, experiment_tags.experiment_id")
            return client.set_experiment_tag(experiment_id, key, value)

    sweep_step.label_experiment(Racing(), read_before, "this sweep's grid")
    assert tags_of(existing)[n.TAG_DESCRIPTION] == "the other sweep's grid"


def test_a_write_that_keeps_failing_is_raised(tracking):
    client = mlflow.MlflowClient()
    existing = client.get_experiment(client.create_experiment("fm_small"))

    class Refusing:
        def __getattr__(self, name):
            return getattr(client, name)

        def set_experiment_tag(self, *args):
            raise MlflowException("permission denied")

    with pytest.raises(MlflowException, match="permission denied"):
        sweep_step.label_experiment(Refusing(), existing, "d", attempts=2)


def test_sweeps_creating_the_same_experiment_at_once_all_succeed(tracking):
    client = mlflow.MlflowClient()
    start, ids, errors = threading.Barrier(6), [], []

    def sweep(i: int) -> None:
        start.wait()
        try:
            ids.append(sweep_step.experiment_id(client, "fm_medium", f"grid {i}"))
        except Exception as err:  # noqa: BLE001 (reported below)
            errors.append(err)

    threads = [threading.Thread(target=sweep, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(set(ids)) == 1
    tags = tags_of(ids[0])
    assert tags[n.TAG_EXPERIMENT_KIND] == n.EXPERIMENT_KIND_TRAINING
    assert tags[n.TAG_DESCRIPTION] in {f"grid {i}" for i in range(6)}


# --- reproduce ---


def test_an_experiment_reproduce_creates_is_a_training_experiment_with_its_description(tracking):
    client = mlflow.MlflowClient()
    params = {"model": "small", "lr": "0.1", "epochs": "2"}
    description = reproduce_step.rerun_description("abc123", "train", "0123456789abcdef", params)
    created = reproduce_step.rerun_experiment(client, "reruns", "0", description)
    assert tags_of(created)[n.TAG_EXPERIMENT_KIND] == n.EXPERIMENT_KIND_TRAINING
    assert tags_of(created)[n.TAG_DESCRIPTION] == description
    assert (
        "run abc123 (entry point train: the small network (64 relu, sigmoid out) at learning rate 0.1 "
        "for 2 epochs) at commit 0123456789ab"
    ) in description


def test_an_experiment_reproduce_only_finds_is_left_as_it_is(tracking):
    client = mlflow.MlflowClient()
    existing = client.create_experiment("someone else's", tags={"team": "b"})
    assert reproduce_step.rerun_experiment(client, "someone else's", "0", "d") == existing
    assert tags_of(existing) == {"team": "b"}
