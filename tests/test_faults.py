"""Faults done to real processes: signals to the real `mlflow run` process tree, kill -9, deleted
artifacts, two sweeps at once. After each: no run left RUNNING, no pair trained twice, nothing reused
that is not whole.

Every sweep here is `mlflow run <snapshot>` on a private SQLite store; the module's sweeps share one
prefix, so the ingest runs once and each test trains pairs of its own learning rates.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from madness import names
from servers import MLFLOW, Team
from steps import _processes
from stores import ok, snapshot
from tools import sandbox

pytestmark = [pytest.mark.slow, pytest.mark.timed]  # timed: make test runs it alone (bounds in seconds)

PREFIX = "faults"
EXPERIMENT = f"{PREFIX}_small"
STOP_SECONDS = 20  # "within seconds": the launcher watch polls every second; cancelling children takes a few
EPOCHS = "40"  # long enough that a pair is still training when it is hit


@pytest.fixture(scope="module")
def team(tmp_path_factory) -> Team:
    folder = tmp_path_factory.mktemp("faults")
    (folder / "tmp").mkdir()
    # TMPDIR: the steps' temporary folders (those a kill -9 leaves too) stay inside the test's folder.
    # Made now: two processes creating one SQLite store race.
    return Team(sandbox.new_sqlite_store(folder), folder, snapshot(folder / "project"), {"TMPDIR": str(folder / "tmp")})


def sweep_args(lrs: str, epochs: str = EPOCHS, *extra: str) -> list[str]:
    return [
        MLFLOW,
        "run",
        "--env-manager",
        "local",
        "--experiment-name",
        PREFIX,
        "-P",
        "models=small",
        "-P",
        f"lrs={lrs}",
        "-P",
        f"epochs={epochs}",
        "-P",
        f"prefix={PREFIX}",
        *extra,
    ]


def start_sweep(team: Team, lrs: str, epochs: str = EPOCHS) -> subprocess.Popen:
    args = sweep_args(lrs, epochs)
    args.insert(2, str(team.project))
    # Its own session: the signals of these tests reach only what they aim at.
    return subprocess.Popen(
        args,
        cwd=team.folder,
        env=team.environment(None),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def sweep(team: Team, lrs: str, epochs: str = "2", *extra: str) -> subprocess.CompletedProcess:
    args = sweep_args(lrs, epochs, *extra)
    args.insert(2, str(team.project))
    return subprocess.run(
        args, cwd=team.folder, env=team.environment(None), capture_output=True, text=True, timeout=900, check=False
    )


def pair_runs(team: Team, lr: str) -> list:
    return team.runs(EXPERIMENT, f"params.lr = '{lr}'")


def training(team: Team, lr: str, launcher: subprocess.Popen, timeout: float = 300):
    """Wait until the pair's train step runs (its run carries its process token); return that run."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and launcher.poll() is None:
        runs = [r for r in pair_runs(team, lr) if r.info.status == "RUNNING" and names.TAG_PROCESS in r.data.tags]
        if runs:
            return runs[0]
        time.sleep(0.2)
    raise AssertionError(f"no train run of lr={lr} started; the sweep said:\n{finish(launcher)[-3000:]}")


def finish(launcher: subprocess.Popen, timeout: float | None = None) -> str:
    """Wait for the sweep's `mlflow run` (killing its session after `timeout`); its output."""
    if launcher.stdout.closed:
        return ""
    try:
        return launcher.communicate(timeout=timeout)[0]
    except subprocess.TimeoutExpired:
        os.killpg(launcher.pid, signal.SIGKILL)
        return launcher.communicate()[0]


def tree(pid: int) -> list[str]:
    """Process tokens of `pid` and every descendant (read from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (parent := _processes.parent_pid(int(entry.name))) is not None:
            children.setdefault(parent, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(_processes.process_token(current))
        todo += children.get(current, [])
    return found


def wait_until_gone(tokens: list[str], seconds: float = STOP_SECONDS) -> float:
    start = time.monotonic()
    while any(_processes.token_alive(t) for t in tokens):
        alive = [
            f"{t} {' '.join(_processes.command_line(int(t.split(':')[0])))[:120]}"
            for t in tokens
            if _processes.token_alive(t)
        ]
        assert time.monotonic() - start < seconds, f"still alive after {seconds} s: {alive}"
        time.sleep(0.2)
    return time.monotonic() - start


def status(team: Team, run_id: str) -> str:
    return team.client.get_run(run_id).info.status


def settled(team: Team, run_id: str, seconds: float = STOP_SECONDS) -> str:
    """The run's status once it holds for a moment: a stopped step ends its run as it exits, and the
    sweep waiting for a pair ends its run KILLED after MLflow's own wait wrote FAILED over it."""
    deadline, last, since = time.monotonic() + seconds, None, time.monotonic()
    while time.monotonic() < deadline:
        current = status(team, run_id)
        if current != last:
            last, since = current, time.monotonic()
        elif current == "KILLED" or time.monotonic() - since > 8:
            return current
        time.sleep(0.2)
    return last


def finished_once(team: Team, lr: str) -> None:
    finished = [r for r in pair_runs(team, lr) if r.info.status == "FINISHED"]
    assert len(finished) == 1, [(r.info.run_id, r.info.status) for r in pair_runs(team, lr)]


def nothing_running(team: Team) -> None:
    ids = [e.experiment_id for e in team.client.search_experiments()]
    running = team.client.search_runs(ids, "attributes.status = 'RUNNING'")
    assert running == [], [(r.info.run_name, r.info.run_id) for r in running]


# --- the sweep dies with its launcher ---


@pytest.mark.parametrize(
    ("sig", "lr"),
    [(signal.SIGTERM, "0.011"), (signal.SIGINT, "0.012"), (signal.SIGHUP, "0.013"), (signal.SIGKILL, "0.014")],
    ids=["SIGTERM", "SIGINT", "SIGHUP", "SIGKILL"],
)
def test_ending_mlflow_run_stops_the_sweep_and_its_pair_within_seconds(team, sig, lr):
    launcher = start_sweep(team, lr)
    try:
        pair = training(team, lr, launcher)
        sweep_id = pair.data.tags[names.TAG_SWEEP]
        processes = tree(launcher.pid)
        os.kill(launcher.pid, sig)  # the `mlflow run` process alone, as `kill` or a scheduler does
        took = wait_until_gone(processes)
    finally:
        finish(launcher, timeout=0 if launcher.poll() is None else None)
    assert took < STOP_SECONDS
    assert settled(team, pair.info.run_id) == "KILLED"
    # On SIGINT `mlflow run` stops the sweep, then writes FAILED over the run the sweep ended KILLED
    # (an MLflow bug); the run is tagged `stopped`, so the next report (or sweep) ends it KILLED again.
    report = team.step("steps.report", "--sweep_run_id", sweep_id)
    assert status(team, sweep_id) == "KILLED", report.stderr[-2000:]
    nothing_running(team)


def test_a_rerun_right_after_a_sigterm_trains_the_missing_pair_once(team):
    launcher = start_sweep(team, "0.021,0.022")
    try:
        pair = training(team, "0.021", launcher)
        launcher.send_signal(signal.SIGTERM)
    finally:
        finish(launcher, timeout=STOP_SECONDS * 3)
    assert settled(team, pair.info.run_id) == "KILLED"
    result = sweep(team, "0.021,0.022")
    ok(result)
    assert "2 to train" in result.stdout
    for lr in ("0.021", "0.022"):
        finished_once(team, lr)
    nothing_running(team)


def finished_sweeps(team: Team) -> list:
    return team.runs(PREFIX, f"tags.{names.TAG_ENTRY_POINT} = 'main' and attributes.status = 'FINISHED'")


def test_a_sweep_killed_with_9_takes_its_training_pair_with_it(team):
    if not finished_sweeps(team):  # run alone: the report below needs a sweep that finished before
        ok(sweep(team, "0.039"))
    launcher = start_sweep(team, "0.031")
    try:
        pair = training(team, "0.031", launcher)
        sweep_token = team.client.get_run(pair.data.tags[names.TAG_SWEEP]).data.tags[names.TAG_PROCESS]
        os.kill(int(sweep_token.split(":")[0]), signal.SIGKILL)  # steps.main alone
        wait_until_gone([pair.data.tags[names.TAG_PROCESS]])
    finally:
        out = finish(launcher, timeout=STOP_SECONDS * 3)
    assert launcher.returncode != 0
    assert "stopped: the process that launched it" in out
    assert settled(team, pair.info.run_id) == "KILLED", out[-3000:]
    nothing_running(team)

    # The newest sweep died without its pairs.json: plain `report` takes the latest that finished.
    finished = finished_sweeps(team)
    ok(team.step("steps.report"))
    ids = [e.experiment_id for e in team.client.search_experiments()]
    report = team.client.search_runs(
        ids, f"tags.{names.TAG_ENTRY_POINT} = 'report'", order_by=["attributes.start_time DESC"]
    )[0]
    assert report.data.tags[names.TAG_SWEEP] == finished[-1].info.run_id


# --- a crash: no run stays RUNNING ---


def test_after_kill_9_of_every_process_the_next_sweep_ends_the_orphans_and_trains_the_pair_once(team):
    launcher = start_sweep(team, "0.041")
    try:
        pair = training(team, "0.041", launcher)
        sweep_id = pair.data.tags[names.TAG_SWEEP]
        processes = tree(launcher.pid)
        for token in processes:
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(token.split(":")[0]), signal.SIGKILL)
    finally:
        finish(launcher, timeout=0 if launcher.poll() is None else None)
    wait_until_gone(processes)
    assert status(team, pair.info.run_id) == "RUNNING" and status(team, sweep_id) == "RUNNING"  # nobody could end them

    result = sweep(team, "0.041")
    ok(result)
    for run_id in (pair.info.run_id, sweep_id):
        run = team.client.get_run(run_id)
        assert run.info.status == "FAILED"
        assert run.data.tags[names.TAG_ENDED_BY].endswith("the process that ran it was gone")
    finished_once(team, "0.041")
    nothing_running(team)


# --- reuse only what is whole ---


def delete_model_files(team: Team, run) -> None:
    model = next(
        m for m in team.client.search_logged_models([run.info.experiment_id]) if m.source_run_id == run.info.run_id
    )
    shutil.rmtree(Path(model.artifact_location.removeprefix("file://")))


def delete_run_artifacts(team: Team, run) -> None:
    shutil.rmtree(Path(run.info.artifact_uri.removeprefix("file://")))


def test_a_pair_whose_files_are_gone_is_never_listed_best_registered_or_reused(team):
    ok(sweep(team, "0.061,0.062"))
    runs = {lr: pair_runs(team, lr)[0] for lr in ("0.061", "0.062")}
    delete_model_files(team, runs["0.061"])
    sweep_id = runs["0.062"].data.tags[names.TAG_SWEEP]

    report = team.step("steps.report", "--sweep_run_id", sweep_id, "--register", "true", "--filter", "")
    ok(report)
    assert f"run {runs['0.061'].info.run_id} (small_0.061_epochs2) is incomplete" in report.stdout
    assert "| small | 0.061 |" in report.stdout and "INCOMPLETE" in report.stdout
    assert "best: small with learning rate 0.062" in report.stdout
    assert team.client.get_model_version_by_alias(EXPERIMENT, "champion").run_id == runs["0.062"].info.run_id
    registered = {v.run_id for v in team.client.search_model_versions(f"name = '{EXPERIMENT}'")}
    assert runs["0.061"].info.run_id not in registered

    # Now every artifact of the other pair too; spelled another way, both pairs train again.
    delete_run_artifacts(team, runs["0.062"])
    # Registered only past the filter: two 2-epoch pairs at these rates score about 0.33.
    rerun = sweep(team, "6.1e-2,.062", "2", "-P", "register=true", "-P", "filter=metrics.brier < 1")
    ok(rerun)
    assert "0 reused, 2 to train" in rerun.stdout
    for lr in ("0.061", "0.062"):
        assert f"not reusing run {runs[lr].info.run_id}" in rerun.stdout
        assert len([r for r in pair_runs(team, lr) if r.info.status == "FINISHED"]) == 2
    champion = team.client.get_model_version_by_alias(EXPERIMENT, "champion")
    assert champion.run_id not in {runs["0.061"].info.run_id, runs["0.062"].info.run_id}
    nothing_running(team)


# --- two sweeps at once ---


def test_two_identical_sweeps_started_together_train_each_pair_once(team):
    first, second = start_sweep(team, "0.071,0.072", "2"), start_sweep(team, "0.071,0.072", "2")
    outputs = [finish(first, timeout=600), finish(second, timeout=600)]
    assert first.returncode == 0 and second.returncode == 0, "\n\n".join(o[-3000:] for o in outputs)
    for lr in ("0.071", "0.072"):
        finished_once(team, lr)
        assert len(pair_runs(team, lr)) == 1  # never started twice
    nothing_running(team)
