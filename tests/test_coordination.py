"""Liveness and claims: process facts (steps._processes), and the claims' tags in a real SQLite store
(steps._coordination); reports registering at once (steps.report). Real processes: a child that exits is
a dead process, this one a live one."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import mlflow
import pandas as pd
import pytest
from sqlalchemy import event
from sqlalchemy.engine import Engine

from madness import names
from steps import _processes as processes
from steps._coordination import (
    CHOOSING,
    HOST,
    STALE_SECONDS,
    Claims,
    Liveness,
    claim_key,
    end_orphans,
    liveness_tags,
    remote_store,
)


@pytest.fixture(scope="module")
def dead_token() -> str:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    token = processes.process_token(child.pid)
    child.wait()
    return token


# --- liveness rules ---


def test_this_process_is_alive():
    assert processes.token_alive(processes.process_token())


def test_an_exited_process_is_dead(dead_token):
    assert not processes.token_alive(dead_token)


def test_a_reused_pid_with_another_start_time_is_dead():
    pid, _, started = processes.process_token().partition(":")
    assert not processes.token_alive(f"{pid}:{float(started) + 1:.2f}")


def test_garbage_tokens_are_dead():
    assert not processes.token_alive("not-a-pid")


# --- tags in a real store ---


@pytest.fixture
def store(tracking):
    client = mlflow.MlflowClient()
    experiment = client.create_experiment("claims")
    return client, experiment


def holder(client, experiment: str, token: str | None = None) -> str:
    """A RUNNING run standing for a sweep: this process's, or a dead one's."""
    run = client.create_run(experiment, tags={**liveness_tags(), **({names.TAG_PROCESS: token} if token else {})})
    return run.info.run_id


def judged(client, experiment: str, tags: dict, status: str = "RUNNING") -> bool:
    """Liveness's verdict on a run made with these tags and ended with `status` (unless RUNNING)."""
    run_id = client.create_run(experiment, tags=tags).info.run_id
    if status != "RUNNING":
        client.set_terminated(run_id, status)
    return Liveness(client).judge(client.get_run(run_id))


def elsewhere(heartbeat_age: float | None) -> dict[str, str]:
    """Process tags of a step on another host, with a heartbeat this many seconds old (None: none)."""
    beat = {} if heartbeat_age is None else {names.TAG_HEARTBEAT: str(int(time.time() - heartbeat_age))}
    return {names.TAG_HOST: f"not-{HOST}", names.TAG_PROCESS: "1:1", **beat}


def test_a_finished_run_is_not_alive(store):
    client, experiment = store
    assert not judged(client, experiment, liveness_tags(), status="FINISHED")


def test_a_running_run_on_this_host_lives_with_its_process(store, dead_token):
    client, experiment = store
    assert judged(client, experiment, liveness_tags())
    assert not judged(client, experiment, {**liveness_tags(), names.TAG_PROCESS: dead_token})


def test_a_running_run_on_another_host_lives_while_its_heartbeat_is_fresh(store):
    client, experiment = store
    assert judged(client, experiment, elsewhere(STALE_SECONDS - 5))
    assert not judged(client, experiment, elsewhere(STALE_SECONDS + 5))
    assert not judged(client, experiment, elsewhere(None))


def test_an_untagged_run_is_as_alive_as_its_sweep(store, dead_token):
    client, experiment = store
    live, dead = holder(client, experiment), holder(client, experiment, dead_token)
    assert judged(client, experiment, {names.TAG_SWEEP: live})
    assert not judged(client, experiment, {names.TAG_SWEEP: dead})


def test_an_untagged_run_without_a_sweep_is_never_taken_for_dead(store):
    client, experiment = store
    assert judged(client, experiment, {})


def test_a_local_store_needs_no_heartbeat_and_a_server_does():
    assert (
        not remote_store("sqlite:///x.db")
        and not remote_store("/tmp/mlruns")
        and not remote_store("file:///tmp/mlruns")
    )
    assert remote_store("http://127.0.0.1:5000") and remote_store("postgresql://u@h/db")


def test_claim_keys_are_stable_and_differ_by_identity():
    assert claim_key({"lr": "0.1", "model": "small"}) == claim_key({"model": "small", "lr": "0.1"})
    assert claim_key({"lr": "0.1"}) != claim_key({"lr": "0.01"})


def claim(client, experiment: str, holder_run: str, value: str, key: str = "k") -> None:
    """Write a contender's claim tag as Claims.enter does, stopped at a chosen moment."""
    client.set_experiment_tag(experiment, f"{names.CLAIM_PREFIX}{key}.{holder_run}", value)


def test_the_next_ticket_is_one_above_every_ticket_seen(store):
    client, experiment = store
    claim(client, experiment, holder(client, experiment), "3")
    claim(client, experiment, holder(client, experiment), "7")
    mine = holder(client, experiment)
    Claims(client, mine, Liveness(client)).enter(experiment, "k")
    assert client.get_experiment(experiment).tags[f"{names.CLAIM_PREFIX}k.{mine}"] == "8"


def test_the_lower_ticket_goes_first_whoever_entered_first(store):
    client, experiment = store
    first, second = holder(client, experiment), holder(client, experiment)
    claims = Claims(client, second, Liveness(client, ttl=0))
    claims.enter(experiment, "k")
    claim(client, experiment, first, "0")  # a lower ticket than any Claims.enter takes
    assert claims.holder_ahead(experiment, "k") == first


def test_equal_tickets_go_in_holder_order(store):
    client, experiment = store
    low, high = sorted([holder(client, experiment), holder(client, experiment)])
    for run_id in (low, high):
        claim(client, experiment, run_id, "1")  # both chose at once, neither seeing the other's ticket
    for run_id, ahead in ((low, None), (high, low)):
        claims = Claims(client, run_id, Liveness(client, ttl=0))
        claims.held[(experiment, "k")] = 1
        assert claims.holder_ahead(experiment, "k") == ahead


def test_a_contender_still_choosing_is_waited_for_until_it_has_a_ticket(store):
    client, experiment = store
    choosing = holder(client, experiment)
    claims = Claims(client, holder(client, experiment), Liveness(client, ttl=0))
    claims.enter(experiment, "k")
    claim(client, experiment, choosing, CHOOSING)
    assert claims.holder_ahead(experiment, "k") == choosing


def test_two_contenders_one_goes_and_the_other_waits_for_it(store):
    client, experiment = store
    first, second = holder(client, experiment), holder(client, experiment)
    a, b = Claims(client, first, Liveness(client, ttl=0)), Claims(client, second, Liveness(client, ttl=0))
    assert a.holder_ahead(experiment, "k") is None
    assert b.holder_ahead(experiment, "k") == first
    a.release(experiment, "k")
    assert b.holder_ahead(experiment, "k") is None


def test_claims_are_per_key(store):
    client, experiment = store
    a = Claims(client, holder(client, experiment), Liveness(client, ttl=0))
    b = Claims(client, holder(client, experiment), Liveness(client, ttl=0))
    assert a.holder_ahead(experiment, "one") is None
    assert b.holder_ahead(experiment, "two") is None


def test_a_dead_holders_claim_is_ignored_and_removed(store, dead_token):
    client, experiment = store
    dead = holder(client, experiment, dead_token)
    Claims(client, dead, Liveness(client)).enter(experiment, "k")
    live = Claims(client, holder(client, experiment), Liveness(client, ttl=0))
    assert live.holder_ahead(experiment, "k") is None
    assert f"{names.CLAIM_PREFIX}k.{dead}" not in client.get_experiment(experiment).tags


def test_release_all_leaves_no_claim_tag(store):
    client, experiment = store
    claims = Claims(client, holder(client, experiment), Liveness(client))
    claims.enter(experiment, "one")
    claims.enter(experiment, "two")
    claims.release_all()
    assert not [tag for tag in client.get_experiment(experiment).tags if tag.startswith(names.CLAIM_PREFIX)]


def test_orphans_are_ended_failed_and_say_why_while_live_runs_are_left(store, dead_token):
    client, experiment = store
    orphan, live = holder(client, experiment, dead_token), holder(client, experiment)
    untagged = client.create_run(experiment).info.run_id
    assert end_orphans(client, [experiment], Liveness(client), "sweep x") == [orphan]
    assert client.get_run(orphan).info.status == "FAILED"
    assert client.get_run(orphan).data.tags[names.TAG_ENDED_BY] == "sweep x: the process that ran it was gone"
    assert client.get_run(live).info.status == client.get_run(untagged).info.status == "RUNNING"


def test_orphans_are_said_in_one_line(store, dead_token, capsys):
    client, experiment = store
    orphan = holder(client, experiment, dead_token)
    end_orphans(client, [experiment], Liveness(client), "sweep x")
    assert capsys.readouterr().out == f"ended FAILED 1 run(s) left RUNNING by processes that are gone: {orphan}\n"


def test_a_failed_run_tagged_stopped_is_ended_killed_and_others_are_left(store):
    client, experiment = store
    runs = {what: client.create_run(experiment).info.run_id for what in ("stopped", "failed", "running")}
    for what in ("stopped", "running"):
        client.set_tag(runs[what], names.TAG_STOPPED, "interrupted (signal SIGINT)")
    for what in ("stopped", "failed"):
        client.set_terminated(runs[what], "FAILED")  # as `mlflow run` does as it exits
    assert end_orphans(client, [experiment], Liveness(client), "sweep s") == []
    assert {what: client.get_run(run_id).info.status for what, run_id in runs.items()} == {
        "stopped": "KILLED",
        "failed": "FAILED",
        "running": "RUNNING",
    }


def test_a_child_not_yet_tagged_is_an_orphan_when_its_sweep_is_dead(store, dead_token):
    client, experiment = store
    sweep = holder(client, experiment, dead_token)
    child = client.create_run(experiment, tags={names.TAG_SWEEP: sweep}).info.run_id
    assert set(end_orphans(client, [experiment], Liveness(client), "sweep y")) == {sweep, child}


def test_report_ends_the_orphans_of_the_sweeps_experiments_first(store, dead_token):
    from steps.report import end_orphans_of

    client, experiment = store
    sweep = client.create_run(experiment, tags=liveness_tags()).info.run_id
    orphan = holder(client, experiment, dead_token)
    client.log_dict(
        sweep, [{"model": "small", "lr": "0.1", "run_id": orphan, "experiment_id": experiment}], names.PAIRS_FILE
    )
    end_orphans_of(client, sweep, "r1")
    assert client.get_run(orphan).info.status == "FAILED"
    assert client.get_run(orphan).data.tags[names.TAG_ENDED_BY] == "report r1: the process that ran it was gone"
    assert client.get_run(sweep).info.status == "RUNNING"  # this process: alive


# --- reports registering at once: the registry's own version numbers decide ---


class Coin(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input):
        return [0.5] * len(model_input)


class MeetingClient(mlflow.MlflowClient):
    """A real client whose first search of model versions waits at `barrier` once it has its answer,
    so that every report searches before any registers: the race of two reports making versions."""

    def __init__(self, barrier: threading.Barrier):
        super().__init__()
        self.barrier, self.met = barrier, False

    def search_model_versions(self, *args, **kwargs):
        found = super().search_model_versions(*args, **kwargs)
        if not self.met:
            self.met = True
            self.barrier.wait(timeout=60)
        return found


@contextmanager
def inserts_meeting(table: str, barrier: threading.Barrier):
    """Make every thread's INSERT into the store's `table` wait at `barrier` first, so that threads
    which each read the row missing then all insert it: the race a read-then-insert runs into.
    Yield the number of inserts that met."""
    met = []

    def meet(conn, cursor, statement, parameters, context, executemany):
        if statement.startswith(f"INSERT INTO {table} "):
            met.append(statement)
            barrier.wait(timeout=60)

    event.listen(Engine, "before_cursor_execute", meet)
    try:
        yield met
    finally:
        event.remove(Engine, "before_cursor_execute", meet)


@pytest.fixture
def model_run(tracking) -> str:
    with mlflow.start_run() as active:
        mlflow.pyfunc.log_model(name=names.MODEL_DIR, python_model=Coin(), pip_requirements=["mlflow"])
    return active.info.run_id


def test_reports_registering_a_run_at_once_make_one_version(model_run):
    from steps.report import register_versions

    reports = 3
    barrier = threading.Barrier(reports)
    rows = pd.DataFrame({"run_id": [model_run]})
    with ThreadPoolExecutor(reports) as pool:
        for registered in [pool.submit(register_versions, MeetingClient(barrier), "duo", rows) for _ in range(reports)]:
            registered.result()
    client = mlflow.MlflowClient()
    assert [str(v.version) for v in client.search_model_versions(f"run_id = '{model_run}'")] == ["1"]


def test_reports_aliasing_a_version_at_once_all_succeed(model_run):
    """MLflow's SQL store sets an alias by reading it, then inserting it when missing: reports
    setting a new alias at once all insert, and all but one break its unique key."""
    from steps.report import CHAMPION, register_versions

    reports = 3
    rows = pd.DataFrame({"run_id": [model_run]})
    register_versions(mlflow.MlflowClient(), "duo", rows)
    mlflow.MlflowClient().delete_registered_model_alias("duo", CHAMPION)
    with (
        inserts_meeting("registered_model_aliases", threading.Barrier(reports)) as met,
        ThreadPoolExecutor(reports) as pool,
    ):
        for registered in [pool.submit(register_versions, mlflow.MlflowClient(), "duo", rows) for _ in range(reports)]:
            registered.result()
    assert len(met) == reports  # the store still reads, then inserts: the race was run
    assert str(mlflow.MlflowClient().get_model_version_by_alias("duo", CHAMPION).version) == "1"


# --- launcher chains: who waits for a step's process ---

PARENTS = {100: 90, 90: 80, 80: 70, 70: 1, 60: 50, 50: 1, 30: 40, 40: 1}
COMMANDS = {
    90: ["bash", "-c", "python -m steps.main"],  # MLflow runs an entry point's command so
    80: ["/venv/bin/python", "/venv/bin/mlflow", "run", "."],
    70: ["-bash"],  # the user's login shell
    50: ["bash", "-i"],
    40: ["bash", "ci/run"],  # a script waits for what it runs
}


def chain(pid):
    return processes.launcher_chain(pid, parent=PARENTS.get, command=lambda p: COMMANDS.get(p, []))


def test_the_chain_goes_past_shell_wrappers_to_the_first_real_launcher():
    assert chain(100) == [90, 80]


def test_an_interactive_shell_is_not_a_launcher():
    assert chain(60) == []


def test_a_shell_script_is_a_launcher():
    assert chain(30) == [40]


def test_an_orphan_has_no_launcher():
    assert chain(50) == [] and chain(70) == []


def real_chain(shell_command: str) -> list[int]:
    probe = f"{shlex.quote(sys.executable)} -c 'from steps import _processes; print(*_processes.launcher_chain())'"
    out = subprocess.run(
        ["bash", "-c", shell_command.format(probe=probe)], capture_output=True, text=True, check=True
    ).stdout
    return [int(pid) for pid in out.split()]


def test_a_real_child_names_this_process_as_its_launcher():
    assert real_chain("{probe}") == [os.getpid()]  # bash -c execs a single command: no wrapper left


def test_a_real_child_behind_a_shell_wrapper_names_the_wrapper_then_this_process():
    chain = real_chain("{probe}; true")  # two commands: bash stays and waits
    assert (
        len(chain) == 2
        and chain[1] == os.getpid()
        and processes.is_shell_wrapper(processes.command_line(chain[0]) or ["bash", "-c"])
    )


@pytest.mark.parametrize(
    ("command", "wrapper"),
    [
        (["bash", "-c", "x"], True),
        (["/bin/sh", "-c", "x"], True),
        (["bash"], False),
        (["-zsh"], False),
        (["python", "-c", "x"], False),
        ([], False),
    ],
)
def test_shell_wrappers_are_shells_running_one_command(command, wrapper):
    assert processes.is_shell_wrapper(command) is wrapper


def test_gone_names_the_first_ended_process(dead_token):
    assert processes.gone([processes.process_token(), dead_token]) == dead_token
    assert processes.gone([processes.process_token()]) is None


def test_a_zombie_is_not_alive():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    token = processes.process_token(child.pid)
    deadline = time.monotonic() + 10
    while processes.token_alive(token) and time.monotonic() < deadline:  # ended, not yet collected by wait()
        time.sleep(0.05)
    assert not processes.token_alive(token) and child.poll() == 0


@pytest.mark.parametrize(
    ("command", "launcher"),
    [
        (["/venv/bin/python", "/venv/bin/mlflow", "run", "."], True),
        (["mlflow", "run", ".", "-e", "train"], True),
        (["python", "-m", "mlflow", "run", "."], True),
        (["mlflow", "server"], False),
        (["python", "-m", "steps.main"], False),
        (["bash", "-c", "mlflow run ."], False),
        ([], False),
    ],
)
def test_mlflow_run_is_known_by_its_command_line(command, launcher):
    assert processes.is_mlflow_run(command) is launcher
