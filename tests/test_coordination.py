"""Liveness and claims: process facts (steps._processes), the claims' rules (madness.coordination)
and their tags in a real SQLite store (steps._coordination). Real processes: a child that exits is
a dead process, this one a live one."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time

import mlflow
import pytest

from madness import coordination, names
from steps import _processes as processes
from steps._coordination import (
    STALE_SECONDS,
    Claims,
    Liveness,
    LivenessTags,
    alive,
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


NOW = 1_000_000.0


def test_a_finished_run_is_not_alive():
    assert not alive(LivenessTags("FINISHED", "here", processes.process_token(), NOW), NOW, "here")


def test_a_running_run_on_this_host_lives_with_its_process(dead_token):
    assert alive(LivenessTags("RUNNING", "here", processes.process_token(), None), NOW, "here")
    assert not alive(LivenessTags("RUNNING", "here", dead_token, NOW), NOW, "here")


def test_a_running_run_on_another_host_lives_while_its_heartbeat_is_fresh():
    assert alive(LivenessTags("RUNNING", "there", "1:1", NOW - STALE_SECONDS), NOW, "here")
    assert not alive(LivenessTags("RUNNING", "there", "1:1", NOW - STALE_SECONDS - 1), NOW, "here")
    assert not alive(LivenessTags("RUNNING", "there", "1:1", None), NOW, "here")


def test_an_untagged_run_is_as_alive_as_its_sweep():
    assert alive(LivenessTags("RUNNING", sweep="s"), NOW, "here", sweep_alive=lambda run_id: True)
    assert not alive(LivenessTags("RUNNING", sweep="s"), NOW, "here", sweep_alive=lambda run_id: False)


def test_an_untagged_run_without_a_sweep_is_never_taken_for_dead():
    assert alive(LivenessTags("RUNNING"), NOW, "here")


# --- the bakery ---


def test_the_next_ticket_is_one_above_every_ticket_seen():
    assert coordination.next_ticket([]) == 1
    assert coordination.next_ticket(["3", coordination.CHOOSING, "7"]) == 8


def test_a_lone_contender_goes():
    assert coordination.holder_ahead("a", 1, {}) is None


def test_the_lower_ticket_goes_first():
    assert coordination.holder_ahead("b", 2, {"a": "1"}) == "a"
    assert coordination.holder_ahead("a", 1, {"b": "2"}) is None


def test_equal_tickets_go_in_holder_order():
    assert coordination.holder_ahead("b", 1, {"a": "1"}) == "a"
    assert coordination.holder_ahead("a", 1, {"b": "1"}) is None


def test_a_contender_still_choosing_blocks_until_it_has_a_ticket():
    assert coordination.holder_ahead("a", 1, {"b": coordination.CHOOSING}) == "b"


def test_claim_keys_are_stable_and_differ_by_identity():
    assert coordination.claim_key({"lr": "0.1", "model": "small"}) == coordination.claim_key(
        {"model": "small", "lr": "0.1"}
    )
    assert coordination.claim_key({"lr": "0.1"}) != coordination.claim_key({"lr": "0.01"})


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


def test_a_local_store_needs_no_heartbeat_and_a_server_does():
    assert (
        not remote_store("sqlite:///x.db")
        and not remote_store("/tmp/mlruns")
        and not remote_store("file:///tmp/mlruns")
    )
    assert remote_store("http://127.0.0.1:5000") and remote_store("postgresql://u@h/db")


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
