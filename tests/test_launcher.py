"""steps._launcher's reading of MLflow's public SubmittedRun API, which every backend implements.
The launcher end to end (a sweep, a cancelled one, a failing pair) is driven in test_sweep.py and
test_faults.py through real `mlflow.run` children."""

from __future__ import annotations

import subprocess
import sys

import pytest
from kubernetes.config.config_exception import ConfigException
from mlflow.entities import RunStatus
from mlflow.exceptions import MlflowException
from mlflow.projects.submitted_run import LocalSubmittedRun, SubmittedRun

from steps import _launcher as L


def local_run(code: str) -> LocalSubmittedRun:
    return LocalSubmittedRun("r1", subprocess.Popen([sys.executable, "-c", code]))


def test_a_local_childs_status_follows_its_process():
    child = local_run("import time; time.sleep(30)")
    try:
        assert L.status_of(child) == "RUNNING"
    finally:
        child.cancel()
    assert L.status_of(child) == "FAILED"  # killed by a signal: its exit code is not 0


@pytest.mark.parametrize(("code", "status"), [("pass", "FINISHED"), ("raise SystemExit(3)", "FAILED")])
def test_a_local_child_that_ended_is_finished_or_failed_by_its_exit_code(code, status):
    child = local_run(code)
    child.wait()
    assert L.status_of(child) == status


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
    assert L.status_of(NumberedRun(status)) == RunStatus.to_string(status)


def test_only_finished_failed_and_killed_end_a_child():
    ended = {RunStatus.to_string(s) for s in RunStatus.all_status() if RunStatus.is_terminated(s)}
    assert set(L.TERMINAL) == ended


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
    assert L.launch_failure(err) == line
