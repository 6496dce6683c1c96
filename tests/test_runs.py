"""steps._runs.end_run, the one way a run is ended by another process, against a real SQLite store
(the rule that puts KILLED back on a stopped step's run: test_coordination, with end_orphans)."""

from __future__ import annotations

import mlflow
import pytest

from madness import names
from madness.names import Status
from steps._runs import end_run


@pytest.fixture
def client(tracking):
    return mlflow.MlflowClient()


def new_run(client) -> str:
    return client.create_run(client.create_experiment("runs")).info.run_id


def test_a_running_run_is_ended_with_the_status_and_the_reason(client):
    run_id = new_run(client)
    assert end_run(client, run_id, Status.FAILED, "sweep s: the process that ran it was gone") == Status.FAILED
    run = client.get_run(run_id)
    assert run.info.status == "FAILED" and run.info.end_time is not None
    assert run.data.tags[names.TAG_ENDED_BY] == "sweep s: the process that ran it was gone"


def test_without_a_reason_no_tag_is_set(client):
    run_id = new_run(client)
    end_run(client, run_id, Status.KILLED)
    run = client.get_run(run_id)
    assert run.info.status == "KILLED" and names.TAG_ENDED_BY not in run.data.tags


def test_a_run_already_ended_is_left_as_it_is(client):
    run_id = new_run(client)
    client.set_terminated(run_id, "FINISHED")
    assert end_run(client, run_id, Status.FAILED, "too late") == Status.FINISHED
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and names.TAG_ENDED_BY not in run.data.tags


def test_only_a_run_in_the_named_status_is_ended(client):
    run_id = new_run(client)
    client.set_terminated(run_id, "FAILED")
    assert end_run(client, run_id, Status.KILLED, only=(Status.FAILED,)) == Status.KILLED
    assert client.get_run(run_id).info.status == "KILLED"
