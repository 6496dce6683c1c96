"""Runs `mlflow run` created but whose entry point never started (steps._never_started): ended FAILED
with the reason once their creator is gone, never while it may still be building their environment.

The rule's cases run against a real SQLite store with runs tagged as MLflow Projects tags them; the
slow tests reproduce the issue's case on real processes: `mlflow run . -e train` with no conda on
the PATH, and a real environment build (uv) that is still going on."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pytest
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID, MLFLOW_PROJECT_ENTRY_POINT, MLFLOW_SOURCE_TYPE

from madness import names
from servers import MLFLOW, Team
from steps import _never_started as never_started
from steps import _processes
from steps._coordination import Liveness, end_orphans, liveness_tags
from stores import ok, snapshot
from tools import sandbox

GONE = (
    "its entry point never started (MLflow builds its environment first) and the `mlflow run` that created it is gone"
)


@pytest.fixture
def client(tracking):
    return mlflow.MlflowClient()


def created_by_mlflow_run(client, entry: str = "train", start_time: int | None = None, **tags) -> str:
    """A run as `mlflow run` creates it before building the environment: its project tags and
    every parameter MLproject declares for the entry point, no step's tags."""
    project = {MLFLOW_SOURCE_TYPE: "PROJECT", MLFLOW_PROJECT_ENTRY_POINT: entry, **tags}
    run_id = client.create_run("0", start_time=start_time, tags=project).info.run_id
    for name in never_started.declared_parameters().get(entry, ()):
        client.log_param(run_id, name, "1")
    return run_id


def ended_by(client, run_id: str) -> str | None:
    return client.get_run(run_id).data.tags.get(names.TAG_ENDED_BY)


def test_a_run_whose_mlflow_run_is_gone_is_ended_failed_with_the_reason(client):
    run_id = created_by_mlflow_run(client)
    assert end_orphans(client, ["0"], Liveness(client), "report r1") == [run_id]
    assert client.get_run(run_id).info.status == "FAILED"
    assert ended_by(client, run_id) == f"report r1: {GONE}"


def test_a_run_whose_step_started_is_judged_by_its_process_alone(client):
    run_id = created_by_mlflow_run(client, **liveness_tags())
    assert never_started.abandoned(client.get_run(run_id), Liveness(client), False, time.time()) is None
    assert end_orphans(client, ["0"], Liveness(client), "report r1") == []


def test_runs_of_other_projects_and_runs_made_outside_mlflow_run_are_left(client):
    other_entry_point = created_by_mlflow_run(client, entry="some_other_entry_point")
    project_tags = {MLFLOW_SOURCE_TYPE: "PROJECT", MLFLOW_PROJECT_ENTRY_POINT: "main"}
    other_main = client.create_run("0", tags=project_tags).info.run_id  # another project's main: not our params
    client.log_param(other_main, "alpha", "0.5")
    by_hand = client.create_run("0").info.run_id
    assert end_orphans(client, ["0"], Liveness(client), "report r1") == []
    assert {client.get_run(r).info.status for r in (other_entry_point, other_main, by_hand)} == {"RUNNING"}


def test_a_child_lives_while_the_run_that_created_it_lives(client):
    parent = client.create_run("0", tags=liveness_tags()).info.run_id  # this process: alive
    child = created_by_mlflow_run(client, **{MLFLOW_PARENT_RUN_ID: parent})
    assert end_orphans(client, ["0"], Liveness(client), "sweep s") == []
    assert client.get_run(child).info.status == "RUNNING"


def test_a_child_whose_creating_run_is_dead_is_ended(client):
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    token = _processes.process_token(gone.pid)
    gone.wait()
    parent = client.create_run("0", tags={**liveness_tags(), names.TAG_PROCESS: token}).info.run_id
    child = created_by_mlflow_run(client, **{MLFLOW_PARENT_RUN_ID: parent})
    assert set(end_orphans(client, ["0"], Liveness(client), "sweep s")) == {parent, child}
    assert ended_by(client, child) == (
        f"sweep s: its entry point never started (MLflow builds its environment first) and run {parent}, "
        "which created it, is no longer alive"
    )


def test_on_a_remote_store_a_run_is_given_the_bound_to_start(client):
    now = time.time()
    fresh = client.get_run(created_by_mlflow_run(client))
    old_id = created_by_mlflow_run(client, start_time=int((now - never_started.STARTING_SECONDS - 1) * 1000))
    assert never_started.abandoned(fresh, Liveness(client), True, now) is None
    assert never_started.abandoned(client.get_run(old_id), Liveness(client), True, now) == (
        "its entry point never started (MLflow builds its environment first) within 60 minutes, "
        "and no `mlflow run` on this host is creating it"
    )


def test_the_project_experiments_are_default_and_those_named_after_the_prefix_that_exist(client):
    small = client.create_experiment("pre_small")
    backtest = client.create_experiment("pre_backtest_large")
    client.create_experiment("other_small")
    assert sorted(never_started.project_experiments(client, "pre")) == sorted(["0", small, backtest])


def test_a_store_location_is_an_absolute_path_or_the_uri():
    assert never_started.store_location("sqlite:///mlflow.db", "/work/a") == "/work/a/mlflow.db"
    assert never_started.store_location("sqlite:////tmp/s/mlflow.db", "/work/a") == "/tmp/s/mlflow.db"
    assert never_started.store_location("file:///tmp/mlruns", "/work/a") == "/tmp/mlruns"
    assert never_started.store_location("mlruns", "/work/a") == "/work/a/mlruns"
    assert never_started.store_location("http://127.0.0.1:5000", "/work/a") == "http://127.0.0.1:5000"


# --- on real processes: the command without conda, and an environment still being built ---


@pytest.fixture
def team(tmp_path) -> Team:
    return Team(sandbox.new_sqlite_store(tmp_path), tmp_path, snapshot(tmp_path / "project"))


def without_conda(team: Team) -> dict:
    """The test's environment with no conda: no folder on PATH holding one, no MLFLOW_CONDA_HOME."""
    env = team.environment(None)
    env["PATH"] = os.pathsep.join(d for d in env["PATH"].split(os.pathsep) if not (Path(d) / "conda").exists())
    env.pop("MLFLOW_CONDA_HOME", None)
    return env


def runs_in_default(team: Team, entry: str) -> list:
    return team.client.search_runs(["0"], f"tags.`{MLFLOW_PROJECT_ENTRY_POINT}` = '{entry}'")


def wait_for_run(team: Team, entry: str, seconds: float = 120) -> mlflow.entities.Run:
    """The entry point's run, once MLflow has logged its parameters (right after creating it, before
    it builds the environment)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        runs = [run for run in runs_in_default(team, entry) if run.data.params]
        if runs:
            return runs[0]
        time.sleep(0.2)
    raise AssertionError(f"mlflow run made no {entry} run with its parameters in {seconds} s")


@pytest.mark.slow
def test_the_designs_command_without_conda_is_ended_by_the_next_sweep_and_a_building_run_is_left(team, tmp_path):
    # The command as a user without conda types it: MLflow creates the run, then stops.
    failed = subprocess.run(
        [MLFLOW, "run", str(team.project), "-e", "train", "-P", "model=medium", "-P", "lr=0.01"],
        cwd=team.folder,
        env=without_conda(team),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert failed.returncode != 0 and "Could not find Conda executable" in failed.stderr
    [stranded] = runs_in_default(team, "train")
    assert stranded.info.status == "RUNNING"

    # Another command's environment is being built (uv, into a new folder): frozen mid-build, it stays there.
    # It starts beyond the clock's slack after the stranded run, which it could otherwise have created.
    time.sleep(max(0.0, stranded.info.start_time / 1000 + never_started.CLOCK_SLACK_SECONDS + 1 - time.time()))
    building = subprocess.Popen(
        [MLFLOW, "run", str(team.project), "-e", "ingest", "--env-manager", "uv"],
        cwd=team.folder,
        env={**team.environment(None), "MLFLOW_ENV_ROOT": str(tmp_path / "envs")},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        starting = wait_for_run(team, "ingest")
        os.killpg(building.pid, signal.SIGSTOP)
        assert names.TAG_PROCESS not in team.client.get_run(starting.info.run_id).data.tags, "its step started already"

        sweep = team.mlflow_run("-P", "models=small", "-P", "lrs=0.1", "-P", "epochs=1", "-P", "jobs=1")
        ok(sweep)
        run = team.client.get_run(stranded.info.run_id)
        assert run.info.status == "FAILED"
        assert run.data.tags[names.TAG_ENDED_BY].endswith(GONE)
        assert run.data.tags[names.TAG_ENDED_BY].startswith("sweep ")
        assert f"ended FAILED 1 run(s) left RUNNING by processes that are gone: {stranded.info.run_id}" in sweep.stdout
        assert team.client.get_run(starting.info.run_id).info.status == "RUNNING"
    finally:
        os.killpg(building.pid, signal.SIGKILL)
        building.wait()

    # Its `mlflow run` killed mid-build, the building run is abandoned too: the report ends it.
    report = team.mlflow_run("-e", "report")
    ok(report)
    run = team.client.get_run(starting.info.run_id)
    assert run.info.status == "FAILED"
    assert run.data.tags[names.TAG_ENDED_BY].startswith("report ") and run.data.tags[names.TAG_ENDED_BY].endswith(GONE)
