"""The team server's fast checks (tools/teamserver.py, tests/servers.py) and how a step names a failing
store; the servers themselves run in the slow test_team_server*.py modules."""

from __future__ import annotations

import os
import socket

import mlflow
import pytest
from _pytest.outcomes import Failed, Skipped

import servers
from steps._failures import is_store_failure, store_failure, without_credentials
from steps._lifecycle import single_attempt
from tools.teamserver import ServerError, TeamServer, free_port, port_in_use


def test_free_ports_are_free_and_a_listening_port_is_in_use():
    port = free_port()
    assert not port_in_use(port)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        assert port_in_use(sock.getsockname()[1])


def test_a_taken_port_is_refused_before_anything_starts(tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        with pytest.raises(
            ServerError, match=rf"^port {port} on 127.0.0.1 is in use; choose another \(make server PORT=...\)$"
        ):
            TeamServer(tmp_path / "server", port=port).start()
    assert not (tmp_path / "server").exists()


def test_without_postgresql_the_server_tests_skip_with_the_reason(monkeypatch):
    monkeypatch.setattr(servers, "postgres_bindir", lambda: None)
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(Skipped, match="PostgreSQL's server programs"):
        servers.require_postgres()


def test_without_postgresql_the_server_tests_fail_under_ci(monkeypatch):
    monkeypatch.setattr(servers, "postgres_bindir", lambda: None)
    monkeypatch.setenv("CI", "true")
    with pytest.raises(Failed, match="CI must install them"):
        servers.require_postgres()


def test_ci_has_postgresqls_server_programs():
    if os.environ.get("CI") != "true":
        pytest.skip("only CI promises them (.ci/run installs them)")
    assert servers.postgres_bindir() is not None


@pytest.mark.parametrize(
    ("uri", "shown"),
    [
        ("http://alice:secret@127.0.0.1:5000", "http://127.0.0.1:5000"),
        ("https://alice@host/path", "https://host/path"),
        ("http://127.0.0.1:5000", "http://127.0.0.1:5000"),
        ("sqlite:///mlflow.db", "sqlite:///mlflow.db"),
    ],
)
def test_uris_are_shown_without_credentials(uri, shown):
    assert without_credentials(uri) == shown


def test_an_unreachable_server_is_named_in_one_line(monkeypatch):
    uri = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    mlflow.set_tracking_uri(uri)
    try:
        with single_attempt(), pytest.raises(Exception) as caught:
            mlflow.MlflowClient().search_experiments()
        assert (
            store_failure(caught.value)
            == f"cannot reach the tracking server {uri} (connection refused); is it running? (make server starts one)"
        )
        assert is_store_failure(caught.value)
    finally:
        mlflow.set_tracking_uri(None)


def test_a_bug_is_not_taken_for_a_store_failure():
    assert store_failure(ValueError("a bug")) is None
    assert not is_store_failure(ValueError("a bug")) and not is_store_failure(KeyboardInterrupt())


def test_single_attempt_restores_the_retry_settings(monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "5")
    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_TIMEOUT", raising=False)
    with single_attempt():
        assert os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "0"
    assert os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "5" and "MLFLOW_HTTP_REQUEST_TIMEOUT" not in os.environ
