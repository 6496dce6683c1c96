"""steps._launcher's reading of MLflow's public SubmittedRun API, which every backend implements, and
the order in which Launcher.step claims, starts and reuses pairs. The launcher end to end (a sweep,
a cancelled one, a failing pair) is driven in test_sweep.py and test_faults.py through real
`mlflow.run` children."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import Future

import pytest
from kubernetes.config.config_exception import ConfigException
from mlflow.entities import RunStatus
from mlflow.exceptions import MlflowException
from mlflow.projects.submitted_run import LocalSubmittedRun, SubmittedRun

from conftest import subprocess_env
from madness import sweep
from madness.names import ENDED, Status
from steps import _launcher, _lifecycle


def local_run(code: str) -> LocalSubmittedRun:
    return LocalSubmittedRun("r1", subprocess.Popen([sys.executable, "-c", code]))


def test_a_local_childs_status_follows_its_process():
    child = local_run("import time; time.sleep(30)")
    try:
        assert _launcher.status_of(child) == "RUNNING"
    finally:
        child.cancel()
    assert _launcher.status_of(child) == "FAILED"  # killed by a signal: its exit code is not 0


@pytest.mark.parametrize(("code", "status"), [("pass", "FINISHED"), ("raise SystemExit(3)", "FAILED")])
def test_a_local_child_that_ended_is_finished_or_failed_by_its_exit_code(code, status):
    child = local_run(code)
    child.wait()
    assert _launcher.status_of(child) == status


class NumberedRun(SubmittedRun):
    """A SubmittedRun reporting MLflow's RunStatus numbers, as MLflow's KubernetesSubmittedRun does."""

    def __init__(self, status: int):
        self.status = status

    def wait(self):
        return self.status == RunStatus.FINISHED

    def get_status(self):
        return self.status

    def cancel(self):
        self.status = RunStatus.KILLED

    @property
    def run_id(self):
        return "r2"


@pytest.mark.parametrize(
    "status", [RunStatus.SCHEDULED, RunStatus.RUNNING, RunStatus.FINISHED, RunStatus.FAILED, RunStatus.KILLED]
)
def test_a_status_reported_as_a_number_is_read_as_its_name(status):
    assert _launcher.status_of(NumberedRun(status)) == RunStatus.to_string(status)


def test_only_finished_failed_and_killed_end_a_child():
    ended = {RunStatus.to_string(s) for s in RunStatus.all_status() if RunStatus.is_terminated(s)}
    assert set(ENDED) == ended


@pytest.mark.parametrize(
    ("err", "line"),
    [
        (
            MlflowException("Could not find Conda executable at conda.\nmore"),
            "Could not find Conda executable at conda.",
        ),
        (ModuleNotFoundError("No module named 'kubernetes'"), "ModuleNotFoundError: No module named 'kubernetes'"),
        (RuntimeError(), "RuntimeError"),
        (
            MlflowException(
                "Ran `docker info` to ensure docker daemon is running but it failed with the "
                "following output:\nClient:\n Version: 28.5.1\n\nServer:\nCannot connect to the Docker daemon at "
                "unix:///var/run/docker.sock. Is the docker daemon running?\n"
            ),
            "no Docker engine to push the image with: `docker info` says: Cannot connect to the Docker daemon at "
            "unix:///var/run/docker.sock. Is the docker daemon running?",
        ),
        (
            ConfigException("Service host/port is not set."),
            "no Kubernetes cluster to create the Job in: Service host/port is not set; name a context of "
            "`kubectl config get-contexts` as kube-context in backend_config",
        ),
    ],
    ids=["mlflow", "another-library", "no-text", "no-docker-engine", "no-kube-context"],
)
def test_a_launch_failure_is_one_line_naming_its_kind_when_not_mlflows(err, line):
    assert _launcher.launch_failure(err) == line


# --- a backend out of reach: the runs are ended all the same ---


class UnreachableRun(SubmittedRun):
    """A child whose backend cannot be reached: every call fails, as a cluster's API out of reach would."""

    def __init__(self, run_id: str):
        self._run_id = run_id

    def wait(self):
        raise ConnectionError("cluster unreachable")

    def get_status(self):
        raise ConnectionError("cluster unreachable")

    def cancel(self):
        raise ConnectionError("cluster unreachable")

    @property
    def run_id(self):
        return self._run_id


def test_a_child_that_cannot_be_stopped_is_named_and_counts_as_killed(capsys):
    stopping = threading.Event()
    stopping.set()
    assert _launcher.wait_remote(UnreachableRun("r3"), stopping, "small_0.1") == ("KILLED", "")
    assert "  small_0.1: could not be stopped: cluster unreachable" in capsys.readouterr().out


def test_a_child_whose_status_cannot_be_read_is_asked_again_while_patience_lasts(monkeypatch, capsys):
    monkeypatch.setattr(_launcher, "REMOTE_STATUS_SECONDS", 0.05)
    monkeypatch.setattr(_launcher, "STATUS_PATIENCE_SECONDS", 0.5)
    started = time.monotonic()
    _launcher.wait_remote(UnreachableRun("r3"), threading.Event(), "small_0.1")
    assert time.monotonic() - started >= 0.5
    said = capsys.readouterr().out
    assert said.count("small_0.1: its status cannot be read: cluster unreachable; asking again") == 1


def test_a_child_whose_status_stays_unreadable_fails_named(monkeypatch):
    monkeypatch.setattr(_launcher, "STATUS_PATIENCE_SECONDS", 0.0)
    status, error = _launcher.wait_remote(UnreachableRun("r3"), threading.Event(), "small_0.1")
    assert status == "FAILED"
    assert error.startswith("its status could not be read for ") and error.endswith(": cluster unreachable")


# Takes the submit lock once told to go, holds it a second, and prints when it held it.
HOLD_THE_SUBMIT_LOCK = """
import sys, time
from steps._launcher import one_remote_submit_at_a_time
print("ready", flush=True)
sys.stdin.readline()
with one_remote_submit_at_a_time():
    held = time.time()
    time.sleep(1.0)
    print(held, time.time(), flush=True)
"""


def test_two_sweeps_submitting_at_once_take_the_submit_lock_one_after_the_other(tmp_path):
    env = subprocess_env({"TMPDIR": str(tmp_path)})
    sweeps = [
        subprocess.Popen(
            [sys.executable, "-c", HOLD_THE_SUBMIT_LOCK],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(2)
    ]
    for process in sweeps:
        assert process.stdout.readline() == "ready\n"
    for process in sweeps:  # both told to go at once
        process.stdin.write("go\n")
        process.stdin.flush()
    spans = sorted(tuple(map(float, process.communicate(timeout=60)[0].split())) for process in sweeps)
    assert spans[0][1] <= spans[1][0], spans
    assert os.listdir(tmp_path) == [_launcher.SUBMIT_LOCK_FILE]


@pytest.mark.timeout(30)  # without the poll the wait never ends: fail, not hang
def test_a_sweep_asked_to_stop_stops_waiting_for_the_submit_lock(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setattr(_lifecycle, "stop", threading.Event())
    monkeypatch.setattr(_lifecycle, "_reasons", [])
    monkeypatch.setattr(_lifecycle, "SINGLE_ATTEMPT", {})  # this process's store calls stay as they were
    with _launcher.one_remote_submit_at_a_time():  # held by another sweep
        threading.Timer(0.5, _lifecycle.request_stop, ["interrupted (signal SIGINT)"]).start()
        started = time.monotonic()
        with pytest.raises(_lifecycle.Interrupted), _launcher.one_remote_submit_at_a_time():
            pytest.fail("the lock was taken while another held it")
        assert time.monotonic() - started < 5  # asked at 0.5 s; the lock itself is held until the test ends


# --- Launcher.step: which pairs are claimed, started, waited for and reused ---


class Ahead:
    """Claims as steps._coordination.Claims answers them: the holder ahead of this sweep per key."""

    def __init__(self, ahead: dict[str, str | None]):
        self.ahead, self.asked, self.released = ahead, [], []

    def holder_ahead(self, experiment_id: str, key: str) -> str | None:
        self.asked.append(key)
        return self.ahead[key]

    def release(self, experiment_id: str, key: str) -> None:
        self.released.append(key)


class NoRuns:
    def search_runs(self, *args, **kwargs) -> list:
        return []


class Pool:
    """A pool whose workers never end: a started pair stays running."""

    def submit(self, fn, job):
        return Future()


def test_a_pair_is_claimed_once_a_slot_is_free_and_a_waiting_one_is_reused_with_none_free():
    claims = Ahead({"a": "s2", "b": None, "c": None})
    reusable = {}
    launcher = _launcher.Launcher(NoRuns(), None, 1, "s1", lambda job: reusable.get(job.key), claims)
    jobs = [
        _launcher.Job(sweep.Pair("small", lr), "fm_small", "1", {}, key=key)
        for lr, key in (("0.1", "a"), ("0.2", "b"), ("0.3", "c"))
    ]
    pending = list(jobs)

    assert launcher.step(pending, Pool()) == []
    # a waits for sweep s2; b takes the one slot; c, with no slot left, is not even claimed.
    assert claims.asked == ["a", "b"]
    assert pending == [jobs[0], jobs[2]] and jobs[0].waiting_for == "sweep s2"
    assert list(launcher.running.values()) == [jobs[1]] and jobs[1].status == Status.RUNNING

    claims.ahead["a"], reusable["a"] = None, "r9"  # s2 is done and its run is whole
    assert launcher.step(pending, Pool()) == [jobs[0]]  # looked at again though no slot is free
    assert claims.asked == ["a", "b", "a"] and claims.released == ["a"]
    assert pending == [jobs[2]] and (jobs[0].run_id, jobs[0].reused) == ("r9", True)
