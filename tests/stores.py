"""Helpers for the step tests: a tracking store that outlives one test, a project snapshot, artifact listing."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import mlflow

from madness import dataset
from tools import sandbox


@contextmanager
def temp_store(folder: Path):
    """A new store in `folder` with an experiment "tests" as the default, for a fixture of any scope."""
    with sandbox.temp_store(folder, "tests") as (uri, experiment_id):
        yield uri, experiment_id


def all_artifacts(client: mlflow.MlflowClient, run_id: str, path: str | None = None) -> list[str]:
    files = []
    for info in client.list_artifacts(run_id, path):
        files += all_artifacts(client, run_id, info.path) if info.is_dir else [info.path]
    return files


def model_files(run_id: str, name: str = "model") -> list[str]:
    """The files of the run's logged model. MLflow 3 keeps a logged model outside the run's own
    artifacts; a runs:/<id>/<name> URI reaches it, so list through that URI."""
    files = []
    for info in mlflow.artifacts.list_artifacts(artifact_uri=f"runs:/{run_id}/{name}"):
        files += model_files(run_id, info.path) if info.is_dir else [info.path]
    return files


def logged_models_of(experiment_id: str, run_id: str) -> list:
    return [m for m in mlflow.MlflowClient().search_logged_models([experiment_id]) if m.source_run_id == run_id]


def synthetic_features(folder: Path, league: str = "W", seed: int = 42) -> Path:
    """The synthetic league's feature folder (what an ingest run logs), written with madness.dataset."""
    files, synthetic_data = dataset.read_inputs("synthetic", league, seed, folder / "raw")
    built = dataset.build(files, dataset.Seasons(2003, 2019, 2022, 2023), synthetic_data)
    dataset.write(built, folder / "features")
    return folder / "features"


def run_ids(experiment_id: str) -> set[str]:
    return {r.info.run_id for r in mlflow.MlflowClient().search_runs([experiment_id])}


def snapshot(dst: Path) -> Path:
    """The working tree as it is now, with its git history (tools.sandbox.snapshot)."""
    return sandbox.snapshot(dst)


def ok(result) -> None:
    assert result.returncode == 0, (
        f"exit {result.returncode}\n--- stdout\n{result.stdout[-4000:]}\n--- stderr\n{result.stderr[-4000:]}"
    )


def last_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""
