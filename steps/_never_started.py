"""Runs that `mlflow run` created but whose entry point never started: found once their creator is
gone, so that the next sweep or report ends them FAILED (steps._coordination.end_orphans; the rules
for users: docs/reliability.md, Runs left RUNNING).

MLflow Projects creates a project's run (tag mlflow.source.type=PROJECT) before it builds the
environment (conda, virtualenv, uv: minutes) and starts the entry point's command. When the build
fails (no conda: "Could not find Conda executable") or its process is stopped, nobody ends the run.
Every step tags its run with its process as it starts (steps._coordination.liveness_tags), so a run
of this project's entry points without those tags never reached its step.
"""

from __future__ import annotations

import functools
import os
import urllib.parse
from pathlib import Path

import mlflow
import psutil
import yaml
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID, MLFLOW_PROJECT_ENTRY_POINT, MLFLOW_SOURCE_TYPE

import madness.names
from madness.model import MODEL_NAMES
from steps._failures import sqlite_path
from steps._processes import is_mlflow_run

PROJECT_ROOT = Path(__file__).resolve().parent.parent
STARTING_SECONDS = 3600.0  # a remote store's bound: conda solving and downloading TensorFlow's tree takes minutes
CLOCK_SLACK_SECONDS = 2.0  # a process's start time (whole seconds since boot) against the run's clock


@functools.cache
def declared_parameters() -> dict[str, frozenset[str]]:
    """Return each entry point MLproject declares, with the names of its parameters."""
    entry_points = yaml.safe_load((PROJECT_ROOT / "MLproject").read_text())["entry_points"]
    return {entry: frozenset(spec.get("parameters") or {}) for entry, spec in entry_points.items()}


def of_this_project(run) -> bool:
    """Return whether MLflow Projects created the run for one of this project's entry points: tagged
    so, and holding every parameter MLproject declares for it (MLflow logs them all as it creates the
    run), so that another project's `main` in a shared experiment is not taken for ours."""
    tags = run.data.tags
    declared = declared_parameters().get(tags.get(MLFLOW_PROJECT_ENTRY_POINT, ""))
    return tags.get(MLFLOW_SOURCE_TYPE) == "PROJECT" and declared is not None and declared <= run.data.params.keys()


def project_experiments(client, prefix: str) -> list[str]:
    """Return the ids of the experiments where this project's commands put runs, those that exist:
    Default (`mlflow run` without --experiment-name), `<prefix>`, `<prefix>_<model>`,
    `<prefix>_backtest` and `<prefix>_backtest_<model>`."""
    names = ["Default", prefix, f"{prefix}_backtest"]
    names += [f"{prefix}{middle}_{model}" for middle in ("", "_backtest") for model in MODEL_NAMES]
    found = (client.get_experiment_by_name(name) for name in names)
    return [e.experiment_id for e in found if e is not None and e.lifecycle_stage == "active"]


def abandoned(run, run_alive, remote: bool, now: float) -> str | None:
    """Return why the RUNNING `run` is to be ended: MLflow Projects created it, its step never
    started and its creator is gone. None when its step started (its own process decides), it is not
    a run of this project's entry points, or its creator may still be building its environment.
    Its creator is its parent run's process (a sweep, a reproduce, a script inside `mlflow.start_run()`)
    when it has one, whose liveness `run_alive(run_id)` tells (steps._coordination.Liveness); else an
    `mlflow run` (mlflow_run_here): on a local store all run on this host, on a remote store one may
    run on another host, which cannot be asked, so the run is left STARTING_SECONDS."""
    tags = run.data.tags
    if madness.names.TAG_PROCESS in tags or not of_this_project(run):
        return None
    never = "its entry point never started (MLflow builds its environment first)"
    parent = tags.get(MLFLOW_PARENT_RUN_ID)
    if parent is not None:
        return None if run_alive(parent) else f"{never} and run {parent}, which created it, is no longer alive"
    if mlflow_run_here(run.info.run_id, run.info.start_time / 1000):
        return None
    if not remote:
        return f"{never} and the `mlflow run` that created it is gone"
    if now - run.info.start_time / 1000 < STARTING_SECONDS:
        return None
    return f"{never} within {STARTING_SECONDS / 60:.0f} minutes, and no `mlflow run` on this host is creating it"


def mlflow_run_here(run_id: str, created: float) -> bool:
    """Return whether an `mlflow run` process on this host may be creating the run: one launched for it
    (`--run-id`), or one tracking into this store (or into one it does not say) that started before it."""
    here = store_location(mlflow.get_tracking_uri(), os.getcwd())
    for process in psutil.process_iter(["cmdline", "create_time"]):
        command = process.info["cmdline"] or []
        if not is_mlflow_run(command):
            continue
        if run_id in command:
            return True
        if process.info["create_time"] > created + CLOCK_SLACK_SECONDS:
            continue
        try:
            uri, cwd = process.environ().get("MLFLOW_TRACKING_URI"), process.cwd()
        except psutil.NoSuchProcess:  # gone meanwhile: not creating anything now
            continue
        except psutil.Error:  # another user's: it may be the creator
            return True
        if uri is None or store_location(uri, cwd) == here:
            return True
    return False


def store_location(uri: str, cwd: str) -> str:
    """Return where a tracking URI points: a local store's absolute path (a relative one is taken from
    `cwd`, the process's folder), any other URI as it is."""
    database, parsed = sqlite_path(uri), urllib.parse.urlparse(uri)
    if database is None and parsed.scheme not in ("", "file"):
        return uri
    return str((Path(cwd) / (database or parsed.path)).resolve())
