"""Faults of a team server during a sweep: each ends finished, or in one line naming the server within a
bounded time; the next invocation leaves no run RUNNING and trains only the pairs still missing."""

from __future__ import annotations

import subprocess
import threading
import time

import pytest

from servers import MLFLOW, last_line, ok
from steps._entry import (
    HTTP_DEFAULTS,
)  # what docs/team-server.md tells users to export for `mlflow run` (test_readme checks)
from tools.teamserver import free_port

pytestmark = pytest.mark.slow

LRS = ["0.01", "0.1", "0.05"]
SWEEP = ["--models", "small", "--lrs", ",".join(LRS), "--epochs", "3", "--jobs", "1"]  # one pair after another
BOUND = 300  # seconds: a sweep of three 3-epoch pairs plus half a minute of retries, with room


def disrupted_sweep(team, prefix: str, fault, repair) -> tuple[subprocess.CompletedProcess, float]:
    """Start the sweep; once its second pair trains, apply `fault`, wait 3 s, `repair`; return how it ended."""
    process = team.popen("steps.main", *SWEEP, "--prefix", prefix)
    err: list[str] = []
    drain = threading.Thread(target=lambda: err.append(process.stderr.read()))  # a full pipe would stall the sweep
    drain.start()
    lines: list[str] = []
    started = time.monotonic()
    for line in process.stdout:
        lines.append(line)
        if line.startswith("[1/3 done] running: small_0.1"):
            break
    else:
        pytest.fail("the sweep ended before its second pair:\n" + "".join(lines))
    fault()
    time.sleep(3)
    repair()
    lines.append(process.stdout.read())
    process.wait(timeout=BOUND)
    drain.join()
    return subprocess.CompletedProcess(
        process.args, process.returncode, "".join(lines), "".join(err)
    ), time.monotonic() - started


def ends_finished_or_in_one_line_naming_the_server(result, team) -> None:
    if result.returncode == 0:
        return
    line = last_line(result.stderr)
    assert line.startswith("error: "), result.stderr[-3000:]
    assert team.uri in line or "pairs failed" in line, line  # the server named, or the pairs its outage failed
    assert "Traceback" not in result.stderr, result.stderr[-3000:]


def then_the_next_invocation_trains_only_what_is_missing(team, prefix: str) -> None:
    finished = {
        name for name, runs in team.by_name(f"{prefix}_small").items() if any(r.info.status == "FINISHED" for r in runs)
    }
    again = team.step("steps.main", *SWEEP, "--prefix", prefix)
    ok(again)
    assert f"3 pairs, {len(finished)} reused, {3 - len(finished)} to train" in again.stdout
    assert team.running() == []
    runs = team.by_name(f"{prefix}_small")
    assert {name: sum(r.info.status == "FINISHED" for r in rs) for name, rs in runs.items()} == {
        f"small_{lr}": 1 for lr in LRS
    }


def test_mlflow_server_killed_mid_sweep_and_restarted_on_the_same_port(server, team):
    result, seconds = disrupted_sweep(team, "kill", server.kill_mlflow, server.start_mlflow)
    ends_finished_or_in_one_line_naming_the_server(result, team)
    assert seconds < BOUND
    then_the_next_invocation_trains_only_what_is_missing(team, "kill")


def test_postgresql_stopped_mid_sweep_and_started_again(server, team):
    result, seconds = disrupted_sweep(team, "pg", server.stop_postgres, server.start_postgres)
    ends_finished_or_in_one_line_naming_the_server(result, team)
    assert seconds < BOUND
    then_the_next_invocation_trains_only_what_is_missing(team, "pg")


@pytest.fixture(scope="module")
def unreachable(team):
    """A step and `mlflow run`, started together against a loopback port nothing listens on."""
    nowhere = f"http://127.0.0.1:{free_port()}"
    started = time.monotonic()
    step = team.popen("steps.main", *SWEEP, "--prefix", "gone", env={"MLFLOW_TRACKING_URI": nowhere})
    # `mlflow run` creates its run before any step starts: with the retry settings docs/team-server.md gives
    # for it, MLflow's own CLI gives up as quickly, naming the server in its error.
    cli = subprocess.Popen(
        [MLFLOW, "run", str(team.project), "--env-manager", "local", "-P", "models=small"],
        cwd=team.folder,
        env=team.environment({"MLFLOW_TRACKING_URI": nowhere, **HTTP_DEFAULTS}),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    ended = {}
    for name, process in (("step", step), ("mlflow run", cli)):
        out, err = process.communicate(timeout=300)
        ended[name] = (
            subprocess.CompletedProcess(process.args, process.returncode, out, err),
            time.monotonic() - started,
        )
    return nowhere, ended


def test_a_server_unreachable_at_start_is_one_line_naming_it_within_a_minute(unreachable):
    nowhere, ended = unreachable
    result, seconds = ended["step"]
    assert seconds < 60
    assert result.returncode == 1
    assert (
        result.stderr.strip()
        == f"error: cannot reach the tracking server {nowhere} (connection refused); is it running? (make server starts one)"
    )
    assert f"tracking server {nowhere} not answering (connection refused); retrying" in result.stdout  # not silent


def test_mlflow_run_against_an_unreachable_server_gives_up_within_a_minute(unreachable):
    nowhere, ended = unreachable
    result, seconds = ended["mlflow run"]
    assert seconds < 60
    assert result.returncode != 0
    assert nowhere in last_line(result.stderr)


def test_no_run_is_left_running(team):
    assert team.running() == []
