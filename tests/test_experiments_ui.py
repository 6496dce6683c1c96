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

from madness import describe, names
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
    assert names.TAG_EXPERIMENT_KIND == "mlflow.experimentKind"
    assert names.EXPERIMENT_KIND_TRAINING == "custom_model_development"


def test_the_description_tag_is_mlflows_note():
    from mlflow.utils.mlflow_tags import MLFLOW_RUN_NOTE

    assert names.TAG_DESCRIPTION == MLFLOW_RUN_NOTE == "mlflow.note.content"


# --- the words ---


@pytest.mark.parametrize("model", list(ARCHITECTURES))
def test_a_model_description_names_its_network_and_how_runs_are_named(model):
    widths = "-".join(map(str, ARCHITECTURES[model]))
    text = describe.model_description(model)
    assert text.startswith(f"Fabric Madness: the {model} network ({widths} relu, sigmoid out); one run per")
    assert f"e.g. {model}_0.01_epochs5_seeds3" in text and "\n" not in text


def test_an_unknown_model_is_named_without_a_shape():
    assert describe.model_description("huge").startswith("Fabric Madness: the huge network;")


def test_the_sweep_description_names_the_model_experiments():
    text = describe.sweep_description("fm")
    assert text.endswith("in the experiment fm_<model> of its network")
    assert "\n" not in text


def test_a_run_name_is_model_and_rate_with_each_non_default_setting_after_it():
    from steps.train import PARAMS

    defaults = {param.name: param.default for param in PARAMS}
    assert describe.run_name("medium", "0.1", defaults, defaults) == "medium_0.1"
    given = {**defaults, "epochs": 5, "seeds": 3, "data": "../shared/data/mmlm2024/", "league": "W"}
    assert describe.run_name("medium", "0.1", given, defaults) == "medium_0.1_epochs5_seeds3_datammlm2024_leagueW"


def test_mlflows_made_up_run_names_are_told_from_given_ones():
    from mlflow.utils.name_utils import _generate_random_name

    from steps._experiments import generated_name

    assert all(generated_name(_generate_random_name()) for _ in range(20))
    assert not any(generated_name(name) for name in ("medium_0.01", "sweep", "my-own-run", "brave-cat"))


def test_the_network_words_give_its_widths_and_the_activations_build_uses():
    assert describe.network_words("large") == "the large network (128-64-64 relu, sigmoid out)"


# --- the sweep's experiments in a real store ---


def test_a_new_model_experiment_is_a_training_experiment_with_its_description(tracking):
    description = describe.model_description("medium")
    experiment = sweep_step.experiment_id(mlflow.MlflowClient(), "fm_medium", description)
    tags = tags_of(experiment)
    assert tags["mlflow.experimentKind"] == "custom_model_development"
    assert tags["mlflow.note.content"] == description


def test_an_existing_experiment_without_the_tags_gets_both(tracking):
    client = mlflow.MlflowClient()
    existing = client.create_experiment("fm_small")
    assert sweep_step.experiment_id(client, "fm_small", "the small one") == existing
    assert tags_of(existing)[names.TAG_EXPERIMENT_KIND] == names.EXPERIMENT_KIND_TRAINING
    assert tags_of(existing)[names.TAG_DESCRIPTION] == "the small one"


def test_a_users_own_description_is_kept_and_the_kind_added(tracking):
    client = mlflow.MlflowClient()
    existing = client.create_experiment("fm_large", tags={names.TAG_DESCRIPTION: "my notes on the large net"})
    sweep_step.experiment_id(client, "fm_large", describe.model_description("large"))
    assert tags_of(existing)[names.TAG_DESCRIPTION] == "my notes on the large net"
    assert tags_of(existing)[names.TAG_EXPERIMENT_KIND] == names.EXPERIMENT_KIND_TRAINING


def test_a_kind_already_set_is_kept(tracking):
    client = mlflow.MlflowClient()
    existing = client.create_experiment("fm_small", tags={names.TAG_EXPERIMENT_KIND: "classification"})
    sweep_step.experiment_id(client, "fm_small", "the small one")
    assert tags_of(existing)[names.TAG_EXPERIMENT_KIND] == "classification"


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

    assert sweep_step.experiment_id(Counting(), "fm_small", "the small one") == first
    assert writes == []
    assert tags_of(first)[names.TAG_DESCRIPTION] == "the small one"


def test_the_sweep_runs_experiment_gets_the_kind_only(tracking):
    client = mlflow.MlflowClient()
    existing = client.create_experiment("from mlflow run --experiment-name")
    sweep_step.label_experiment(client, client.get_experiment(existing), description=None)
    assert tags_of(existing)[names.TAG_EXPERIMENT_KIND] == names.EXPERIMENT_KIND_TRAINING
    assert names.TAG_DESCRIPTION not in tags_of(existing)


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
                client.set_experiment_tag(experiment_id, names.TAG_EXPERIMENT_KIND, names.EXPERIMENT_KIND_TRAINING)
                client.set_experiment_tag(experiment_id, names.TAG_DESCRIPTION, "the other sweep's grid")
                raise MlflowException("UNIQUE constraint failed: experiment_tags.key, experiment_tags.experiment_id")
            return client.set_experiment_tag(experiment_id, key, value)

    sweep_step.label_experiment(Racing(), read_before, "this sweep's grid")
    assert tags_of(existing)[names.TAG_DESCRIPTION] == "the other sweep's grid"


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
    assert tags[names.TAG_EXPERIMENT_KIND] == names.EXPERIMENT_KIND_TRAINING
    assert tags[names.TAG_DESCRIPTION] in {f"grid {i}" for i in range(6)}


# --- reproduce ---


def test_an_experiment_reproduce_creates_is_a_training_experiment_with_its_description(tracking):
    client = mlflow.MlflowClient()
    params = {"model": "small", "lr": "0.1", "epochs": "2"}
    description = reproduce_step.rerun_description("abc123", "train", "0123456789abcdef", params)
    created = reproduce_step.rerun_experiment(client, "reruns", "0", description)
    assert tags_of(created)[names.TAG_EXPERIMENT_KIND] == names.EXPERIMENT_KIND_TRAINING
    assert tags_of(created)[names.TAG_DESCRIPTION] == description
    assert (
        "run abc123 (entry point train: the small network (64 relu, sigmoid out) at learning rate 0.1 "
        "for 2 epochs) at commit 0123456789ab"
    ) in description


def test_an_experiment_reproduce_only_finds_is_left_as_it_is(tracking):
    client = mlflow.MlflowClient()
    existing = client.create_experiment("someone else's", tags={"team": "b"})
    assert reproduce_step.rerun_experiment(client, "someone else's", "0", "d") == existing
    assert tags_of(existing) == {"team": "b"}


def test_a_description_the_project_wrote_follows_and_one_a_user_edited_stays(tracking):
    client = mlflow.MlflowClient()
    ours = sweep_step.experiment_id(client, "fm_medium", "an older wording")
    sweep_step.experiment_id(client, "fm_medium", describe.model_description("medium"))
    assert tags_of(ours)["mlflow.note.content"] == describe.model_description("medium")
    client.set_experiment_tag(ours, "mlflow.note.content", "my notes")  # edited in the UI
    sweep_step.experiment_id(client, "fm_medium", "a later wording")
    assert tags_of(ours)["mlflow.note.content"] == "my notes"
