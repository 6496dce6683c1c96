"""Throw-away places to run the project in, shared by the tests and the benchmarks: a private SQLite
tracking store, and a snapshot of the project.

A new SQLite store costs seconds of schema migrations; `new_sqlite_store` migrates one template per
MLflow version and copies it, so a test can have a store of its own for the price of a file copy.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import tempfile
from contextlib import contextmanager
from pathlib import Path

from madness import git

ROOT = Path(__file__).resolve().parent.parent
RUN_CONTEXT = ("MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME")
DEFAULT_EXPERIMENT_ID = 0


def _template() -> Path:
    import mlflow

    path = Path(tempfile.gettempdir()) / f"madness-store-template-{mlflow.__version__}-{os.getuid()}.db"
    if not path.is_file():
        with tempfile.TemporaryDirectory(prefix="madness-store-template-") as tmp:
            staged = Path(tmp) / "mlflow.db"
            mlflow.MlflowClient(tracking_uri=f"sqlite:///{staged}").search_experiments()
            os.replace(staged, path)  # whole or absent: a half-migrated template is never copied
    return path


def new_sqlite_store(folder: Path) -> str:
    """Create a migrated SQLite store at folder/mlflow.db whose default experiment keeps its artifacts
    in folder/mlruns; return its tracking URI."""
    folder.mkdir(parents=True, exist_ok=True)
    database = folder / "mlflow.db"
    shutil.copyfile(_template(), database)
    # The default experiment's artifact location was fixed when the template was made; point it here.
    with sqlite3.connect(database) as connection:
        connection.execute(
            "UPDATE experiments SET artifact_location = ? WHERE experiment_id = ?",
            ((folder / "mlruns" / str(DEFAULT_EXPERIMENT_ID)).as_uri(), DEFAULT_EXPERIMENT_ID),
        )
    connection.close()
    return f"sqlite:///{database}"


@contextmanager
def temp_store(folder: Path, experiment: str | None = None):
    """Make this process and its children track into a new store in `folder` (never ./mlflow.db), with no
    run or experiment inherited from a parent `mlflow run`. With `experiment`, that experiment is
    created (artifacts in folder/artifacts) and made the default. Yields (tracking URI, experiment
    id or None); everything is put back afterwards."""
    import mlflow

    uri = new_sqlite_store(folder)
    saved = {name: os.environ.get(name) for name in ("MLFLOW_TRACKING_URI", *RUN_CONTEXT)}
    os.environ["MLFLOW_TRACKING_URI"] = uri
    for name in RUN_CONTEXT:
        os.environ.pop(name, None)
    mlflow.set_tracking_uri(uri)
    experiment_id = None
    try:
        if experiment is not None:
            experiment_id = mlflow.create_experiment(experiment, artifact_location=(folder / "artifacts").as_uri())
            os.environ["MLFLOW_EXPERIMENT_ID"] = experiment_id
            mlflow.set_experiment(experiment_id=experiment_id)
        yield uri, experiment_id
    finally:
        while mlflow.active_run():
            mlflow.end_run()
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        mlflow.set_tracking_uri(None)


def snapshot(dest: Path, root: Path = ROOT, history: bool = True) -> Path:
    """Copy the working tree as it is now (uncommitted changes included) to `dest`, with its git history
    unless `history` is false. Sweeps run on a snapshot: their cache keys on the commit and the
    tree's state, which edits made to the repo meanwhile would otherwise change. A symbolic link is
    copied as a link, as git keeps it (a .venv linked to a shared environment stays a link)."""
    for name in git.files(root):
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / name, dest / name, follow_symlinks=False)
    if history:
        shutil.copytree(root / ".git", dest / ".git", ignore=shutil.ignore_patterns("index.lock"))
    return dest
