"""`make server` and `make server-stop`, as the README shows them: start, print the URI to export, keep
the data across a stop and a start, refuse a taken port in one line."""

from __future__ import annotations

import re
import socket
import subprocess
import urllib.request
from pathlib import Path

import mlflow
import pytest

from conftest import ROOT
from servers import reachable_folder, require_postgres
from tools.teamserver import BACKEND_ENV, TeamServer, free_port

pytestmark = pytest.mark.slow


def make(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["make", "--no-print-directory", "-C", str(ROOT), *args],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


@pytest.fixture(scope="module")
def started():
    require_postgres()
    with reachable_folder() as folder:
        port = free_port()
        where = [f"SERVER_DIR={folder / 'state'}", f"PORT={port}"]
        try:
            yield make("server", *where), where, port
        finally:
            make("server-stop", *where)


def test_make_server_prints_the_tracking_uri_to_export(started):
    result, _, port = started
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == f"export MLFLOW_TRACKING_URI=http://127.0.0.1:{port}"
    assert re.search(r"^backend store: PostgreSQL on 127\.0\.0\.1:\d+ ", result.stdout, flags=re.M)
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=10) as answer:
        assert answer.read() == b"OK"


def test_make_server_again_says_it_is_already_running(started):
    _, where, port = started
    again = make("server", *where)
    assert (
        again.returncode == 0 and f"already running: export MLFLOW_TRACKING_URI=http://127.0.0.1:{port}" in again.stdout
    )


def test_the_data_survive_a_stop_and_a_start(started):
    _, where, port = started
    uri = f"http://127.0.0.1:{port}"
    experiment = mlflow.MlflowClient(tracking_uri=uri).create_experiment("kept")
    stopped = make("server-stop", *where)
    assert stopped.returncode == 0 and "stopped" in stopped.stdout
    with socket.socket() as sock:
        assert sock.connect_ex(("127.0.0.1", port)) != 0
    restarted = make("server", *where)
    assert restarted.returncode == 0, restarted.stderr
    assert mlflow.MlflowClient(tracking_uri=uri).get_experiment_by_name("kept").experiment_id == experiment


def test_a_taken_port_is_one_line_naming_it(started):
    _, where, port = started
    with reachable_folder() as other:
        result = make("server", f"SERVER_DIR={other / 'state'}", f"PORT={port}")
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert errors == [f"error: port {port} on 127.0.0.1 is in use; choose another (make server PORT=...)"]


def test_an_existing_database_in_the_environment_is_used_instead_of_a_new_cluster(started):
    _, where, port = started
    uri = f"http://127.0.0.1:{port}"
    mlflow.MlflowClient(tracking_uri=uri).create_experiment("shared")
    folder = Path(where[0].split("=", 1)[1])
    database = TeamServer.from_state(folder).postgres.uri()
    with reachable_folder() as other:
        second = [f"SERVER_DIR={other / 'state'}", f"PORT={free_port()}"]
        result = make("server", *second, f"{BACKEND_ENV}={database}")
        try:
            assert result.returncode == 0, result.stderr
            assert f"backend store: the database in {BACKEND_ENV}" in result.stdout
            assert not (other / "state" / "postgres").exists()
            other_uri = result.stdout.strip().splitlines()[-1].split("=", 1)[1]
            assert mlflow.MlflowClient(tracking_uri=other_uri).get_experiment_by_name("shared") is not None
        finally:
            make("server-stop", *second)
