"""Outputs and tracking stores the steps cannot write, on real step processes: one line naming the
path and why, exit 1, no traceback, the launched run FAILED with no artifact, no `.partial` file.

A launched run is what `mlflow run` hands a step: a RUNNING run created beforehand, its id in
MLFLOW_RUN_ID. The read-only paths are real (tests/readonly.py), so each case is a process of its
own; none loads TensorFlow, but importing MLflow costs each several seconds: they are marked slow.
An output that is a directory or under a file (its folder cannot be created), and a full disk
(which stops predict after its run has opened), are in test_evaluate_predict.py.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import mlflow
import pytest

from conftest import subprocess_env
from madness import names
from readonly import NO_PERMISSION, read_only_reason, run_read_only
from stores import all_artifacts, last_line, run_ids, temp_store

TIMEOUT = 120
# The output is checked before the model loads: a model that does not exist proves the order.
NO_MODEL = f"runs:/0123456789abcdef0123456789abcdef/{names.MODEL_DIR}"


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    folder = tmp_path_factory.mktemp("unwritable-store")
    with temp_store(folder) as (uri, experiment_id):
        yield SimpleNamespace(
            uri=uri,
            experiment_id=experiment_id,
            database=folder / "mlflow.db",
            artifacts=folder / "artifacts",
            client=mlflow.MlflowClient(tracking_uri=uri),
        )


def environment(tracking_uri: str, **extra: str) -> dict:
    """A user's shell on `tracking_uri`, with no run, experiment or file-store opt-in of the test process."""
    env = subprocess_env({"MLFLOW_TRACKING_URI": tracking_uri})
    for name in ("MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME", "MLFLOW_ALLOW_FILE_STORE"):
        env.pop(name, None)
    return {**env, **extra}


def in_store(store, **extra: str) -> dict:
    return environment(store.uri, MLFLOW_EXPERIMENT_ID=store.experiment_id, **extra)


def step(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", f"steps.{module}", *args]


def launched_run(store) -> str:
    return store.client.create_run(store.experiment_id).info.run_id


def predict_into(output: Path) -> list[str]:
    return step("predict", "--model_uri", NO_MODEL, "--league", "W", "--output", str(output))


def assert_fails_with(result, line: str) -> None:
    assert result.returncode == 1, f"exit {result.returncode}\n{result.stderr[-3000:]}"
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    assert last_line(result.stderr) == line


def assert_failed_without_artifacts(store, run_id: str) -> None:
    run = store.client.get_run(run_id)
    assert run.info.status == "FAILED"
    assert all_artifacts(store.client, run_id) == []


def run(args: list[str], env: dict, cwd: Path, read_only: Path | None = None, timeout: int = TIMEOUT):
    """The command, with `read_only` (a file or folder) read-only for it alone."""
    options = dict(env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    return run_read_only(read_only, args, **options) if read_only else subprocess.run(args, **options, check=False)


# --- predict's output ---


@pytest.mark.slow
def test_predict_into_a_read_only_folder_fails_naming_it(store, tmp_path):
    why = read_only_reason()
    folder = tmp_path / "out"
    folder.mkdir()
    output = folder / names.SUBMISSION_FILE
    run_id = launched_run(store)
    result = run(predict_into(output), in_store(store, MLFLOW_RUN_ID=run_id), tmp_path, read_only=folder)
    assert_fails_with(result, f"error: cannot write output {output}: {folder} {why}")
    assert list(folder.iterdir()) == []  # neither the output nor a .partial file
    assert_failed_without_artifacts(store, run_id)


# --- the tracking store ---


@pytest.mark.slow
@pytest.mark.parametrize("module", ["ingest", "main"])
def test_a_step_on_a_read_only_sqlite_database_fails_naming_it(store, tmp_path, module):
    why = read_only_reason()
    before = run_ids(store.experiment_id)
    result = run(step(module), in_store(store), tmp_path, read_only=store.database)
    assert_fails_with(result, f"error: the tracking store {store.uri} cannot be written: {store.database} {why}")
    assert run_ids(store.experiment_id) == before


@pytest.mark.slow
def test_a_sqlite_database_in_a_read_only_folder_is_refused_at_once(tmp_path):
    # MLflow alone retries creating a database it cannot create for about 100 s.
    why = read_only_reason()
    folder = tmp_path / "stores"
    folder.mkdir()
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    result = run(step("ingest"), environment(uri), tmp_path, read_only=folder, timeout=30)
    assert_fails_with(result, f"error: the tracking store {uri} cannot be written: {folder} {why}")
    assert list(folder.iterdir()) == []


@pytest.mark.slow
def test_a_read_only_file_store_fails_naming_it(tmp_path):
    why = read_only_reason()
    mlruns = tmp_path / "mlruns"
    mlruns.mkdir()
    result = run(
        step("ingest"), environment(mlruns.as_uri(), MLFLOW_ALLOW_FILE_STORE="true"), tmp_path, read_only=mlruns
    )
    assert_fails_with(result, f"error: the tracking store {mlruns.as_uri()} cannot be written: {mlruns} {why}")
    assert list(mlruns.iterdir()) == []


@pytest.mark.slow
def test_a_file_store_mlflow_refuses_is_named_in_one_line(tmp_path):
    uri = (tmp_path / "mlruns").as_uri()
    result = run(step("ingest"), environment(uri), tmp_path)
    assert_fails_with(
        result,
        f"error: the tracking store {uri} is a file store, which MLflow {mlflow.__version__} "
        "refuses unless MLFLOW_ALLOW_FILE_STORE=true; use a database, e.g. sqlite:///mlflow.db",
    )


@pytest.mark.slow
def test_a_read_only_artifact_store_fails_the_run_in_one_line(store, tmp_path):
    why = read_only_reason()
    store.artifacts.mkdir(exist_ok=True)
    before = run_ids(store.experiment_id)
    result = run(step("ingest", "--league", "W"), in_store(store), tmp_path, read_only=store.artifacts)
    (failed,) = run_ids(store.experiment_id) - before
    strerror = "Permission denied" if why == NO_PERMISSION else "Read-only file system"
    assert_fails_with(result, f"error: the artifact store cannot be written: {store.artifacts / failed}: {strerror}")
    assert_failed_without_artifacts(store, failed)


@pytest.mark.slow
def test_a_model_that_cannot_be_stored_is_removed_and_the_store_named(store, tmp_path):
    # The run's own artifacts can be written, the experiment's logged models cannot: the training
    # is logged, its model's upload fails.
    location = Path(store.client.get_experiment(store.experiment_id).artifact_location.removeprefix("file://"))
    (location / "models").mkdir(parents=True, exist_ok=True)
    before = run_ids(store.experiment_id)
    result = run(
        step("train", "--model", "small", "--epochs", "1", "--league", "W"),
        in_store(store),
        tmp_path,
        read_only=location / "models",
        timeout=600,
    )
    (failed,) = run_ids(store.experiment_id) - before
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
    line = last_line(result.stderr)
    assert line.startswith(f"error: cannot store the model in file://{location}/models/m-"), line
    assert "nothing of it was kept" in line and "/tmp" not in line.replace(str(location), "")
    assert store.client.get_run(failed).info.status == "FAILED"
    models = store.client.search_logged_models([store.experiment_id])
    assert [m for m in models if m.source_run_id == failed] == []  # no FAILED model left visible
    assert list((location / "models").iterdir()) == []
