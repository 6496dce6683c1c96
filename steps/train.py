"""Train: one of the article's Keras networks at one learning rate, tracked and scored by Brier.

Its params are PARAMS below (and MLproject); what it logs is the README's table "What each run
records". Without `features_uri` it builds the features itself, by the same code as `ingest`. With
`seeds` N > 1 it trains N networks (the first from `seed`, the others from seeds derived from it)
and its model and scores are their average's; the curves and `loss.png` are the first network's.
With no test seasons (test_season = last_season + 1) nothing is scored.

    mlflow run . -e train -P model=medium -P lr=0.01 --env-manager local
    mlflow run . -e train -P model=small -P lr=0.001 -P seeds=5 --env-manager local
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
import warnings
from pathlib import Path

import mlflow
from mlflow.entities import Metric
from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

import madness.model
from madness import dataset, describe, names, plots, scoring
from madness.backends import usable_cores
from madness.cli import DATA_PARAMS, SEEDS, Param, non_negative, one_of, parse, positive
from madness.environment import model_pins
from madness.errors import UserError
from madness.limits import check_work
from madness.sweep import canonical
from steps import _lifecycle
from steps._data import build_features, features_source, load_features, log_data, seasons_of
from steps._entry import entry_point, run_as_script, start_run
from steps._experiments import generated_name, own_experiment
from steps.pyfunc_model import FEATURES_ARTIFACT, TournamentModel, average, member_artifact, signature

PARAMS = (
    Param("model", "string", "medium", "network size: small, medium or large", one_of(*madness.model.MODEL_NAMES)),
    Param("lr", "float", 0.001, "Adam learning rate (> 0)", positive),
    Param("epochs", "int", 100, "training epochs (> 0)", positive),
    Param("batch_size", "int", 32, "mini-batch size (> 0)", positive),
    SEEDS,
    Param("threads", "int", 0, "TensorFlow threads (0 = the cores this process may use)", non_negative),
    Param("features_uri", "string", "", "features of an ingest run (runs:/<id>/features); empty: build them here"),
    *DATA_PARAMS,
)


CACHE_ENV = "FABRIC_MADNESS_CACHE"


def compile_cache_base() -> Path:
    """Per user, as pip's cache is (or $FABRIC_MADNESS_CACHE): a compiled training program belongs to
    the machine, not to a run, and the next train run of the same network and data shape loads it."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "fabric-madness"


def log_histories(histories: dict[str, list[float]], start: int) -> None:
    """Log each metric's values as its history (step = position, from `start`) to the active run."""
    now = int(time.time() * 1000)
    metrics = [
        Metric(key, value, now, step)
        for key, values in histories.items()
        for step, value in enumerate(values, start=start)
    ]
    # One call: MLflow's client splits the batch into requests within its per-request limit.
    mlflow.MlflowClient().log_batch(mlflow.active_run().info.run_id, metrics=metrics, synchronous=True)


def log_model(keras_paths: list[Path], features: list[str], signature) -> None:
    """Log the pair's model; if that fails, remove what was stored of it, so that no FAILED logged
    model holding some of its files stays visible, and name the store location that failed."""
    names_file = keras_paths[0].with_name("feature_names.json")
    names_file.write_text(json.dumps(features))
    try:
        # MLflow asks for an input example "to ensure the model signature functions correctly": the
        # signature is given, and the served model's predictions are the logged scores (from_file).
        # The message opens with a terminal colour code, hence the leading ".*".
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", ".*An input example was not provided when logging the model", UserWarning)
            mlflow.pyfunc.log_model(
                name=names.MODEL_DIR,
                python_model=str(Path(__file__).with_name("served_model.py")),
                artifacts={
                    FEATURES_ARTIFACT: str(names_file),
                    **{member_artifact(i): str(path) for i, path in enumerate(keras_paths)},
                },
                code_paths=[str(Path(__file__).parent), str(Path(madness.model.__file__).parent)],  # steps/, madness/
                signature=signature,
                pip_requirements=model_pins(),  # explicit: MLflow's own inference reruns the model (slow)
            )
    except BaseException as err:
        # A train run logs one model: whatever model this run holds is the one that failed.
        run = mlflow.active_run().info
        stored = mlflow.search_logged_models(
            [run.experiment_id], f"source_run_id = '{run.run_id}'", output_format="list"
        )
        if not stored:
            raise  # failed before the model was created: nothing stored
        for each in stored:
            with contextlib.suppress(Exception):  # what cannot be removed is in a model marked deleted
                get_artifact_repository(each.artifact_location).delete_artifacts()
            mlflow.MlflowClient().delete_logged_model(each.model_id)
        if isinstance(err, OSError):  # its path is a temporary copy's or the store's: name the store
            raise UserError(
                f"cannot store the model in {stored[0].artifact_location} ({err.strerror or err}); "
                "nothing of it was kept: free space or make the artifact store writable, then train again"
            ) from None
        raise


@entry_point
def main(argv=None):
    """Run the train entry point: parse its params, train, log the run (see the module docstring)."""
    started = time.perf_counter()
    values, raw = parse("train", __doc__.splitlines()[0], PARAMS, argv)
    check_work(values["epochs"], values["seeds"], values["batch_size"])  # before TensorFlow loads
    if not values["features_uri"]:
        seasons_of(values)  # inverted seasons stop here, before any data is read
    madness.model.use_compile_cache(compile_cache_base())
    madness.model.set_threads(values["threads"] or usable_cores())
    client = mlflow.MlflowClient()
    with (
        start_run("train", raw, **own_experiment(client, values["model"])) as run,
        tempfile.TemporaryDirectory() as tmp,
    ):
        name_run(client, run, values)
        # A sweep's pair (or a reproduce's rerun) is a child run: its parent says how it went, in one line.
        child = names.TAG_PARENT_RUN in run.data.tags
        uri = values["features_uri"]
        built = load_features(uri, Path(tmp)) if uri else build_features(values, Path(tmp))
        log_data(built, source=features_source(uri) if uri else values["data"])
        features = built.feature_names
        x_train, y_train = dataset.split_xy(built.games, features, names.TRAIN)
        x_val, y_val = dataset.split_xy(built.games, features, names.VAL)
        x_test, y_test = dataset.split_xy(built.games, features, names.TEST)
        ready = time.perf_counter()

        seeds = madness.model.member_seeds(values["seed"], values["seeds"])
        members = [
            madness.model.train(
                values["model"],
                built.scaler,
                values["lr"],
                x_train,
                y_train,
                x_val,
                y_val,
                values["epochs"],
                values["batch_size"],
                seed,
                check_stop=_lifecycle.check_stop,
            )
            for seed in seeds
        ]
        trained_at = time.perf_counter()

        # Scored through the served model's own code on the saved files: the networks still compiled
        # for training run another TensorFlow graph, whose probabilities can differ in the last bits.
        keras_paths = [Path(tmp) / ("network.keras" if i == 0 else f"network_{i}.keras") for i in range(len(members))]
        for member, path in zip(members, keras_paths, strict=True):
            member.model.save(path)
        served = TournamentModel.from_files(features, keras_paths)
        first = members[0]
        log_histories({names.TRAIN_LOSS: first.train_loss, names.VAL_LOSS: first.val_loss}, start=1)  # step = epoch
        # Without test seasons (a model for the coming tournament) there is nothing to score, and
        # the signature's output is described from the validation rows.
        rows = x_test if len(x_test) else x_val
        each = served.member_predictions(rows)
        probabilities = average(each)
        scores = scores_on_test(built, y_test, probabilities) if len(x_test) else {}
        if len(members) > 1:
            scores.update(log_members(seeds, members, y_test, each if len(x_test) else None))
        mlflow.log_metrics({**scores, names.BEST_EPOCH: first.best_epoch + 1})
        constant = scoring.is_constant(probabilities)
        mlflow.set_tag(names.TAG_CONSTANT, str(constant).lower())
        mlflow.log_figure(
            plots.loss_figure(first.train_loss, first.val_loss, first.best_epoch, values["model"], raw["lr"]),
            names.LOSS_PLOT,
        )
        log_model(keras_paths, features, signature(features, rows, probabilities))
        done = time.perf_counter()
        seconds = (
            f"start-up and data {ready - started:.1f}, training {trained_at - ready:.1f}, "
            f"scoring and logging {done - trained_at:.1f}"
        )
        mlflow.set_tag(names.TAG_SECONDS, seconds)  # a sweep's pair prints no line of its own: its split is here
    if not child:
        print(
            f"train run {run.info.run_id}: {values['model']} lr={raw['lr']} {summary(scores)}, "
            f"best epoch {', '.join(str(m.best_epoch + 1) for m in members)}; seconds: {seconds}"
        )
    if constant:
        print(
            f"warning: {values['model']} lr={raw['lr']} gives about the same probability to every game "
            f"({probabilities.mean():.4f} +- {probabilities.std():.4f}): the network learned nothing; "
            f"a lower learning rate usually trains it (run tagged {names.TAG_CONSTANT}=true)"
        )


def name_run(client, run, values: dict) -> None:
    """Name the run `<model>_<lr>` with its non-default settings after it (madness.describe.run_name)
    when its caller gave it no name (MLflow made one up) or only `<model>_<lr>` (a sweep names its
    pairs so, whatever their epochs, seeds or data); any other name stays."""
    lr = canonical(str(values["lr"]))
    if generated_name(run.info.run_name) or run.info.run_name == f"{values['model']}_{lr}":
        name = describe.run_name(values["model"], lr, values, {p.name: p.default for p in PARAMS})
        if name != run.info.run_name:
            client.set_tag(run.info.run_id, names.TAG_RUN_NAME, name)


def log_members(seeds: list[int], members: list[madness.model.Trained], y_test, each) -> dict:
    """Log a pair's several seeds: each member's seed, best epoch and (with test seasons) Brier in
    members.json, the Brier as a history (step = member) for MLflow's charts; return their mean
    and standard deviation to log beside the averaged model's scores."""
    record = [{"seed": seed, names.BEST_EPOCH: m.best_epoch + 1} for seed, m in zip(seeds, members, strict=True)]
    if each is None:
        mlflow.log_dict(record, names.MEMBERS_FILE)
        return {}
    briers, mean, sd = scoring.seed_spread(y_test, each)
    for entry, value in zip(record, briers, strict=True):
        entry[names.BRIER] = value
    mlflow.log_dict(record, names.MEMBERS_FILE)
    log_histories({names.BRIER_SEED: briers}, start=0)
    return {names.BRIER_MEAN: mean, names.BRIER_SD: sd}


def scores_on_test(built: dataset.Built, y_test, p_test) -> dict:
    """Return the test seasons' scores; the seed baseline (fit on the training seasons) on the same
    games, and this model's Brier minus the baseline's with a paired-bootstrap interval over those
    games. Log the test rows' predictions beside the baseline's (predictions.csv), which the report's
    comparisons of runs resample in turn."""
    games = built.games
    test = games[games[names.SPLIT] == names.TEST]
    baseline = scoring.seed_baseline(games[games[names.SPLIT] == names.TRAIN], test)
    against = scoring.paired_brier_difference(y_test, p_test, baseline, scoring.game_labels(test))
    predictions = test[[names.SEASON, names.T1_TEAM, names.T2_TEAM, names.TARGET]].assign(
        **{names.PREDICTION: p_test, names.BASELINE_PREDICTION: baseline}
    )
    mlflow.log_text(predictions.to_csv(index=False), names.PREDICTIONS_FILE)
    return {
        **scoring.all_scores(y_test, p_test),
        names.BASELINE_BRIER: scoring.brier(y_test, baseline),
        names.N_GAMES: len(y_test) // 2,
        names.BRIER_VS_BASELINE: against.estimate,
        names.BRIER_VS_BASELINE_LOW: against.low,
        names.BRIER_VS_BASELINE_HIGH: against.high,
    }


def summary(scores: dict) -> str:
    """Return the scores as train's line says them: Brier (and the seeds' mean and sd), the seed baseline, and the
    difference with its interval; or that there were no test seasons."""
    if not scores:
        return "no test seasons (trained for the coming tournament): not scored"
    members = (
        f" (the seeds' averaged model; each seed's network alone: brier_mean {scores[names.BRIER_MEAN]:.4f}"
        f" +- brier_sd {scores[names.BRIER_SD]:.4f})"
        if names.BRIER_MEAN in scores
        else ""
    )
    return (
        f"brier={scores[names.BRIER]:.4f}{members} (seed baseline {scores[names.BASELINE_BRIER]:.4f}, difference "
        f"{scores[names.BRIER_VS_BASELINE]:+.4f}, 95% [{scores[names.BRIER_VS_BASELINE_LOW]:+.4f}, {scores[names.BRIER_VS_BASELINE_HIGH]:+.4f}])"
    )


if __name__ == "__main__":
    run_as_script(main)
