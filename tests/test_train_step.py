"""The train entry point: in-process on one synthetic feature folder (bad inputs too), and through `mlflow run`.

One tracking store and one feature folder (the synthetic women's league, written with madness.dataset
the way an ingest run logs it) serve the whole module; the in-process runs pass it as --features_uri.
"""

from __future__ import annotations

import io
import json
import random
import re
import sys
from contextlib import redirect_stderr, redirect_stdout
from importlib import metadata
from pathlib import Path
from types import SimpleNamespace

import mlflow
import numpy as np
import pandas as pd
import pytest

from conftest import ROOT, run_cli, runs_of
from madness import names, scoring
from steps.train import CACHE_ENV, PARAMS, main
from stores import all_artifacts, logged_models_of, model_files, run_ids, synthetic_features, temp_store

pytestmark = pytest.mark.usefixtures("synthetic_league_once")

GIVEN = {"model": "small", "lr": "1e-2", "epochs": "5", "batch_size": "32", "seed": "7"}
NO_RUN = "0123456789abcdef0123456789abcdef"


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    with temp_store(tmp_path_factory.mktemp("train-store")) as (uri, experiment_id):
        yield SimpleNamespace(uri=uri, experiment_id=experiment_id, client=mlflow.MlflowClient(tracking_uri=uri))


@pytest.fixture(scope="module")
def features(tmp_path_factory) -> Path:
    return synthetic_features(tmp_path_factory.mktemp("data"))


def train_in_process(store, features: Path, **given):
    """Run steps.train's main in this process; return the new run and what it printed."""
    args = {**GIVEN, "features_uri": str(features), **given}
    before = run_ids(store.experiment_id)
    out = io.StringIO()
    with redirect_stdout(out):
        main([item for name, value in args.items() for item in (f"--{name}", value)])
    (new,) = run_ids(store.experiment_id) - before
    return SimpleNamespace(run=store.client.get_run(new), printed=out.getvalue(), args=args)


@pytest.fixture(scope="module")
def trained(store, features):
    return train_in_process(store, features)


@pytest.fixture(scope="module")
def held_out_rows(features):
    """The test seasons' rows, feature columns typed as the signature declares them: seeds long, others double."""
    games = pd.read_csv(features / names.GAMES_FILE)
    scaler = json.loads((features / names.SCALER_FILE).read_text())
    types = {name: "int64" if name.endswith(names.SEED_NUM) else "float64" for name in scaler["features"]}
    games = games[games[names.SPLIT] == names.TEST].astype(types)
    return games, scaler["features"]


def history(store, run, key):
    return sorted(store.client.get_metric_history(run.info.run_id, key), key=lambda m: m.step)


# --- one in-process run ---


def test_the_run_finishes(trained):
    assert trained.run.info.status == "FINISHED"


@pytest.mark.parametrize("key", [names.TRAIN_LOSS, names.VAL_LOSS])
def test_loss_history_has_one_value_per_epoch_with_step_equal_to_epoch(store, trained, key):
    metrics = history(store, trained.run, key)
    assert [m.step for m in metrics] == [1, 2, 3, 4, 5]
    assert all(np.isfinite(m.value) and m.value > 0 for m in metrics)


def test_training_loss_goes_down(store, trained):
    values = [m.value for m in history(store, trained.run, names.TRAIN_LOSS)]
    assert values[-1] < values[0]


def test_best_epoch_is_the_epoch_of_lowest_validation_loss(store, trained):
    values = [m.value for m in history(store, trained.run, names.VAL_LOSS)]
    assert trained.run.data.metrics[names.BEST_EPOCH] == int(np.argmin(values)) + 1


def test_scores_are_logged(trained, held_out_rows):
    metrics = trained.run.data.metrics
    for key in (names.BRIER, names.LOG_LOSS, names.ACCURACY, names.BASELINE_BRIER):
        assert 0 < metrics[key] < 1, key
    games, _ = held_out_rows
    assert metrics[names.N_GAMES] == len(games) // 2


def test_the_difference_from_the_baseline_is_logged_inside_its_interval(trained):
    metrics = trained.run.data.metrics
    assert metrics[names.BRIER_VS_BASELINE] == metrics[names.BRIER] - metrics[names.BASELINE_BRIER]
    assert (
        metrics[names.BRIER_VS_BASELINE_LOW]
        <= metrics[names.BRIER_VS_BASELINE]
        <= metrics[names.BRIER_VS_BASELINE_HIGH]
    )
    assert metrics[names.BRIER_VS_BASELINE_LOW] < metrics[names.BRIER_VS_BASELINE_HIGH]


@pytest.fixture(scope="module")
def predictions(trained, tmp_path_factory) -> pd.DataFrame:
    local = mlflow.artifacts.download_artifacts(
        run_id=trained.run.info.run_id, artifact_path=names.PREDICTIONS_FILE, dst_path=str(tmp_path_factory.mktemp("p"))
    )
    return pd.read_csv(local)


def test_the_predictions_file_holds_each_test_row_with_the_logged_scores(trained, held_out_rows, predictions):
    games, _ = held_out_rows
    keys = [names.SEASON, names.T1_TEAM, names.T2_TEAM, names.TARGET]
    assert predictions[keys].equals(games[keys].reset_index(drop=True))
    metrics = trained.run.data.metrics
    # Bit for bit: the CSV keeps each float's shortest exact spelling.
    assert scoring.brier(predictions[names.TARGET], predictions[names.PREDICTION]) == metrics[names.BRIER]
    assert (
        scoring.brier(predictions[names.TARGET], predictions[names.BASELINE_PREDICTION])
        == metrics[names.BASELINE_BRIER]
    )


def test_the_logged_interval_is_the_bootstrap_of_the_predictions_file(trained, predictions):
    interval = scoring.paired_brier_difference(
        predictions[names.TARGET],
        predictions[names.PREDICTION],
        predictions[names.BASELINE_PREDICTION],
        scoring.game_labels(predictions),
    )
    metrics = trained.run.data.metrics
    assert (interval.low, interval.high) == (
        metrics[names.BRIER_VS_BASELINE_LOW],
        metrics[names.BRIER_VS_BASELINE_HIGH],
    )


def test_artifacts_are_logged(store, trained):
    files = all_artifacts(store.client, trained.run.info.run_id)
    assert (
        names.LOSS_PLOT in files
        and names.PREDICTIONS_FILE in files
        and f"{names.FEATURES_DIR}/{names.MANIFEST_FILE}" in files
    )
    # MLflow 3 stores the model as a LoggedModel beside the run; runs:/<id>/model reaches it.
    assert f"{names.MODEL_DIR}/MLmodel" in model_files(trained.run.info.run_id)
    assert len(logged_models_of(store.experiment_id, trained.run.info.run_id)) == 1


def test_the_model_requires_what_it_imports_at_the_versions_it_was_trained_with(trained, tmp_path):
    requirements = (
        Path(
            mlflow.artifacts.download_artifacts(
                artifact_uri=f"runs:/{trained.run.info.run_id}/{names.MODEL_DIR}/requirements.txt",
                dst_path=str(tmp_path),
            )
        )
        .read_text()
        .split()
    )
    assert {line.split("==")[0] for line in requirements} == {"mlflow", "tensorflow", "keras", "numpy", "pandas"}
    for line in requirements:
        name, version = line.split("==")
        assert metadata.version(name) == version, line


def test_params_are_logged_once_each_as_given(trained):
    params = trained.run.data.params
    assert set(params) == {p.name for p in PARAMS}
    for name, value in trained.args.items():
        assert params[name] == value
    assert params["lr"] == "1e-2"  # the string given, not float("1e-2") printed back


def test_each_split_is_a_dataset_whose_source_fetches_the_features_games_csv(trained, features):
    inputs = trained.run.inputs.dataset_inputs
    assert sorted(i.dataset.name for i in inputs) == ["tournament_test", "tournament_train", "tournament_val"]
    for dataset_input in inputs:
        source = mlflow.data.get_source(dataset_input.dataset)
        assert Path(source.load()).read_bytes() == (features / names.GAMES_FILE).read_bytes()


def test_data_tags_name_the_synthetic_data_and_its_digest(trained, features):
    manifest = json.loads((features / names.MANIFEST_FILE).read_text())
    assert trained.run.data.tags[names.TAG_SYNTHETIC] == "true"
    assert trained.run.data.tags[names.TAG_DATA_DIGEST] == manifest["digest"]


def test_a_network_that_tells_games_apart_is_not_tagged_constant(trained):
    assert trained.run.data.tags[names.TAG_CONSTANT] == "false"
    assert "learned nothing" not in trained.printed


def test_the_summary_line_names_the_run_score_and_phase_times(trained):
    line = trained.printed.strip().splitlines()[-1]
    assert line.startswith(f"train run {trained.run.info.run_id}: small lr=1e-2 brier=")
    assert "seconds: start-up and data" in line and "training" in line and "scoring and logging" in line


# --- the logged model ---


@pytest.fixture(scope="module")
def served(trained, tmp_path_factory):
    """The pyfunc model as a user loads it, and the Keras network saved inside it."""
    import keras

    uri = f"runs:/{trained.run.info.run_id}/{names.MODEL_DIR}"
    pyfunc = mlflow.pyfunc.load_model(uri)
    local = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(tmp_path_factory.mktemp("model"))))
    (keras_file,) = list(local.glob("artifacts/*.keras"))
    return pyfunc, keras.models.load_model(keras_file, compile=False)


def test_the_model_signature_takes_the_feature_columns(served, held_out_rows):
    pyfunc, _ = served
    _, features = held_out_rows
    assert pyfunc.metadata.get_input_schema().input_names() == features


def test_the_signature_types_seed_numbers_long_and_every_other_feature_double(served, held_out_rows):
    pyfunc, _ = served
    types = {spec.name: spec.type.name for spec in pyfunc.metadata.get_input_schema().inputs}
    assert types == {name: "long" if name.endswith(names.SEED_NUM) else "double" for name in held_out_rows[1]}


def test_the_pyfunc_model_gives_the_networks_probabilities_for_columns_in_any_order(served, held_out_rows):
    pyfunc, network = served
    games, features = held_out_rows
    shuffled = list(features)
    random.Random(0).shuffle(shuffled)
    assert shuffled != features
    p_served = np.asarray(pyfunc.predict(games[shuffled]), dtype="float64").reshape(-1)
    p_network = network.predict(games[features].to_numpy(dtype="float32"), verbose=0).reshape(-1)
    assert p_served.shape == (len(games),)
    np.testing.assert_allclose(p_served, p_network, rtol=0, atol=1e-6)
    assert ((p_served > 0) & (p_served < 1)).all()


def test_the_logged_brier_is_the_served_models_brier_on_the_test_seasons(served, trained, held_out_rows):
    pyfunc, _ = served
    games, features = held_out_rows
    p = np.asarray(pyfunc.predict(games[features]), dtype="float64").reshape(-1)
    # Bit for bit: train scores through the served model's code, not through the network it trained.
    assert scoring.brier(games[names.TARGET], p) == trained.run.data.metrics[names.BRIER]


def test_the_pyfunc_model_takes_the_feature_table_as_pandas_reads_it(served, features, held_out_rows):
    # games.csv read back holds integer seed numbers; MLflow would refuse int64 for a double column.
    pyfunc, _ = served
    games = pd.read_csv(features / names.GAMES_FILE)
    assert games[f"{names.T1}{names.SEED_NUM}"].dtype == np.int64
    p = np.asarray(pyfunc.predict(games), dtype="float64").reshape(-1)
    as_floats, feature_names = held_out_rows
    expected = np.asarray(pyfunc.predict(as_floats[feature_names]), dtype="float64").reshape(-1)
    np.testing.assert_allclose(p[(games[names.SPLIT] == names.TEST).to_numpy()], expected, rtol=0, atol=1e-6)


def test_the_pyfunc_model_names_a_missing_column(served, held_out_rows):
    pyfunc, _ = served
    games, features = held_out_rows
    with pytest.raises(mlflow.exceptions.MlflowException, match=features[0]):
        pyfunc.predict(games[features[1:]])


def test_the_same_arguments_give_the_same_brier_bit_for_bit(store, features, trained):
    again = train_in_process(store, features)
    assert again.run.info.run_id != trained.run.info.run_id
    assert again.run.data.metrics[names.BRIER] == trained.run.data.metrics[names.BRIER]
    assert [m.value for m in history(store, again.run, names.VAL_LOSS)] == [
        m.value for m in history(store, trained.run, names.VAL_LOSS)
    ]


# --- several seeds ---


@pytest.fixture(scope="module")
def ensemble(store, features):
    return train_in_process(store, features, seeds="3")


def test_a_single_seed_run_logs_no_member_metrics_or_file(store, trained):
    assert not {names.BRIER_MEAN, names.BRIER_SD, names.BRIER_SEED} & set(trained.run.data.metrics)
    assert names.MEMBERS_FILE not in all_artifacts(store.client, trained.run.info.run_id)


def test_a_run_of_several_seeds_logs_each_members_brier_their_mean_and_sample_sd(store, ensemble):
    each = history(store, ensemble.run, names.BRIER_SEED)
    briers = [m.value for m in each]
    assert [m.step for m in each] == [0, 1, 2] and len(set(briers)) == 3
    metrics = ensemble.run.data.metrics
    assert metrics[names.BRIER_MEAN] == float(np.mean(briers))
    assert metrics[names.BRIER_SD] == float(np.std(briers, ddof=1))


def test_the_first_member_of_several_seeds_is_the_single_seed_run_bit_for_bit(store, ensemble, trained):
    assert history(store, ensemble.run, names.BRIER_SEED)[0].value == trained.run.data.metrics[names.BRIER]
    for key in (names.TRAIN_LOSS, names.VAL_LOSS):
        assert [m.value for m in history(store, ensemble.run, key)] == [
            m.value for m in history(store, trained.run, key)
        ]
    assert ensemble.run.data.metrics[names.BEST_EPOCH] == trained.run.data.metrics[names.BEST_EPOCH]


def test_the_model_of_several_seeds_is_the_average_of_its_networks(ensemble, held_out_rows, tmp_path):
    import keras

    uri = f"runs:/{ensemble.run.info.run_id}/{names.MODEL_DIR}"
    local = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(tmp_path)))
    networks = [keras.models.load_model(path, compile=False) for path in sorted(local.glob("artifacts/*.keras"))]
    games, features = held_out_rows
    p = np.asarray(mlflow.pyfunc.load_model(uri).predict(games[features]), dtype="float64").reshape(-1)
    each = [network.predict(games[features].to_numpy(dtype="float32"), verbose=0).reshape(-1) for network in networks]
    assert len(networks) == 3
    np.testing.assert_allclose(p, np.mean(each, axis=0), rtol=0, atol=1e-6)
    # Its logged scores are the average's, through the served model's code, bit for bit.
    assert scoring.brier(games[names.TARGET], p) == ensemble.run.data.metrics[names.BRIER]


def test_the_members_file_names_each_seed_its_best_epoch_and_brier(store, ensemble):
    from madness import model

    members = mlflow.artifacts.load_dict(f"runs:/{ensemble.run.info.run_id}/{names.MEMBERS_FILE}")
    assert [m["seed"] for m in members] == model.member_seeds(int(GIVEN["seed"]), 3)
    assert [m[names.BRIER] for m in members] == [m.value for m in history(store, ensemble.run, names.BRIER_SEED)]
    assert members[0][names.BEST_EPOCH] == ensemble.run.data.metrics[names.BEST_EPOCH]
    assert all(1 <= m[names.BEST_EPOCH] <= int(GIVEN["epochs"]) for m in members)


def test_the_summary_line_of_several_seeds_names_the_average_and_the_members_spread(ensemble):
    metrics = ensemble.run.data.metrics
    assert (
        f"brier={metrics[names.BRIER]:.4f} (the seeds' averaged model; each seed's network alone: brier_mean "
        f"{metrics[names.BRIER_MEAN]:.4f} +- brier_sd {metrics[names.BRIER_SD]:.4f})" in ensemble.printed
    )
    assert re.search(r"best epoch \d+, \d+, \d+;", ensemble.printed), ensemble.printed


def test_a_diverging_learning_rate_fails_the_run_with_one_line_and_logs_no_model(store, features, capsys):
    before = run_ids(store.experiment_id)
    args = {**GIVEN, "features_uri": str(features), "lr": "1e30", "epochs": "3"}
    with pytest.raises(SystemExit) as exit_:
        main([item for name, value in args.items() for item in (f"--{name}", value)])
    assert exit_.value.code == 1
    printed = capsys.readouterr()
    (line,) = printed.err.strip().splitlines()
    assert re.fullmatch(
        r"error: training diverged at learning rate lr=1e\+30: the (training|validation) loss is nan "
        r"at epoch \d of 3; give a smaller learning rate .*",
        line,
    ), line
    (new,) = run_ids(store.experiment_id) - before
    run = store.client.get_run(new)
    assert run.info.status == "FAILED"
    assert not logged_models_of(store.experiment_id, new)
    assert not any(path.startswith(f"{names.MODEL_DIR}/") for path in all_artifacts(store.client, new))
    assert names.BRIER not in run.data.metrics


# --- bad inputs, in this process (test_startup holds what a step's one-line error does to its process) ---

BAD = {
    "model=huge": (["--model", "huge"], ["model", "'huge'"]),
    "lr=abc": (["--lr", "abc"], ["lr", "'abc'"]),
    "lr=0": (["--lr", "0"], ["lr", "0"]),
    "epochs=0": (["--epochs", "0"], ["epochs", "0"]),
    "seeds=0": (["--seeds", "0"], ["seeds", "0"]),
    "features_uri=no such run": (["--features_uri", f"runs:/{NO_RUN}/features"], ["features", NO_RUN]),
}


@pytest.fixture(scope="module")
def bad_runs(store, features):
    """Every bad input given to the step's main: how it exited, what it wrote to stderr, and the runs
    it left in the store."""
    base = ["--model", "small", "--epochs", "1", "--features_uri", str(features)]
    before = run_ids(store.experiment_id)
    results = {}
    for case, (args, _) in BAD.items():
        stderr = io.StringIO()
        with redirect_stderr(stderr), redirect_stdout(io.StringIO()), pytest.raises(SystemExit) as exit_:
            main(base + args)
        results[case] = SimpleNamespace(code=exit_.value.code, stderr=stderr.getvalue())
    new_runs = [store.client.get_run(r) for r in run_ids(store.experiment_id) - before]
    return results, new_runs


@pytest.mark.parametrize("case", list(BAD))
def test_a_bad_input_fails_with_one_line_naming_it(bad_runs, case):
    results, _ = bad_runs
    done = results[case]
    assert done.code not in (0, None), done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert "error" in last.lower(), done.stderr
    for word in BAD[case][1]:
        assert word in last, last


def test_bad_inputs_leave_no_running_run_and_no_model(store, bad_runs):
    _, new_runs = bad_runs
    assert new_runs, "the nonexistent features run fails after its run has started"
    for run in new_runs:
        assert run.info.status == "FAILED", run.info
        assert not logged_models_of(store.experiment_id, run.info.run_id)
        assert not any(path.startswith(f"{names.MODEL_DIR}/") for path in all_artifacts(store.client, run.info.run_id))


# --- through `mlflow run` ---


def mlflow_run(*params: str, env: dict | None = None):
    args = [str(Path(sys.executable).parent / "mlflow"), "run", str(ROOT), "-e", "train", "--env-manager", "local"]
    for param in params:
        args += ["-P", param]
    return run_cli(args, env=env, timeout=900)


@pytest.mark.slow
def test_mlflow_run_trains_and_finishes(tracking, tmp_path):
    done = mlflow_run("model=small", "lr=0.01", "epochs=2", env={CACHE_ENV: str(tmp_path)})
    assert done.returncode == 0, done.stderr[-3000:]
    (run,) = runs_of()
    assert run.info.status == "FINISHED"
    assert 0 < run.data.metrics[names.BRIER] < 1
    assert run.data.params["lr"] == "0.01"
    # the run kept its compiled training program for the next one (madness.model.use_compile_cache)
    assert list(tmp_path.glob("xla-*/*.pb"))


@pytest.mark.slow
def test_mlflow_run_with_a_bad_model_fails_and_ends_the_run_failed(tracking):
    done = mlflow_run("model=huge")
    assert done.returncode != 0
    assert "huge" in done.stderr
    (run,) = runs_of()
    assert run.info.status == "FAILED"
