"""Tracking stores that cannot be one, on real step processes: a file that is not SQLite or is another
application's database, an unknown scheme, a folder, a missing folder, a server that refuses or is no
MLflow server, a store deleted mid-run (under `python -m` and under `mlflow run`). Each ends in one
line naming the store, exit 1, within seconds, and nothing created or changed; a new store created
once (`python -m steps._store_check`, `make run`'s first step) lets two `mlflow run` start together.

The checks run before MLflow touches the store (steps/_store_check.py); `python -m steps.ingest` is
the step: it loads no TensorFlow, but each case costs an interpreter importing MLflow (3-7 s here),
so the module is marked slow, as tests/test_unwritable.py is.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.server
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import mlflow
import pytest

from conftest import subprocess_env
from madness import names
from stores import last_line, ok
from tools import sandbox

SECONDS = 30  # "within seconds", on a loaded machine: each case fails before MLflow opens a store
pytestmark = pytest.mark.slow

INGEST = [sys.executable, "-m", "steps.ingest"]
CHECK = [sys.executable, "-m", "steps._store_check"]
MLFLOW_RUN = [str(Path(sys.executable).parent / "mlflow"), "run"]


def environment(tracking_uri: str, **extra: str) -> dict:
    env = subprocess_env({"MLFLOW_TRACKING_URI": tracking_uri})
    for name in ("MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME"):
        env.pop(name, None)
    return {**env, **extra}


def step(tracking_uri: str, cwd: Path, command=INGEST, timeout: int = SECONDS, **extra: str):
    return subprocess.run(
        command,
        cwd=cwd,
        env=environment(tracking_uri, **extra),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def assert_one_line(result, line: str) -> None:
    assert result.returncode == 1, f"exit {result.returncode}\n{result.stderr[-3000:]}"
    assert result.stderr.strip() == line, result.stderr[-3000:]


def contents(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.rglob("*") if p.is_file()
    }


def other_application(path: Path) -> None:
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE notes (body TEXT)")
    db.close()


def damaged_sqlite(path: Path) -> None:
    path.write_bytes(b"SQLite format 3\x00" + b"\xff" * 2000)


FOREIGN = {
    "text": (
        lambda path: path.write_text("hello\n"),
        "is not a SQLite database: {db} starts with b'hello\\n'; give an MLflow SQLite store or a new file",
    ),
    "png": (
        lambda path: path.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(64)),
        "is not a SQLite database: {db} starts with b'\\x89PNG\\r\\n\\x1a\\n'; "
        "give an MLflow SQLite store or a new file",
    ),
    "other application": (
        other_application,
        "is another application's SQLite database ({db}, tables notes), not an MLflow store; "
        "give an MLflow store or a new file",
    ),
    "damaged": (
        damaged_sqlite,
        "is a damaged SQLite database ({db}: file is not a database); give an MLflow SQLite store or a new file",
    ),
}


@pytest.mark.parametrize("kind", FOREIGN)
def test_a_file_that_is_no_mlflow_store_is_refused_untouched(tmp_path, kind):
    make, problem = FOREIGN[kind]
    folder = tmp_path / "stores"
    folder.mkdir()
    database = folder / "mlflow.db"
    make(database)
    before = contents(folder)
    uri = f"sqlite:///{database}"
    result = step(uri, tmp_path)
    assert_one_line(result, f"error: the tracking store {uri} {problem.format(db=database)}")
    assert contents(folder) == before  # no table added, no journal left


def test_an_unknown_scheme_is_refused_naming_the_accepted_ones(tmp_path):
    result = step("foo://x", tmp_path)
    assert_one_line(
        result,
        "error: the tracking store foo://x has an unknown scheme 'foo'; accepted: sqlite:///<file>.db, "
        "http(s)://<server>, postgresql://, mysql://, mssql:// or file:<folder>",
    )


def test_a_store_path_that_is_a_folder_is_refused_at_once(tmp_path):
    folder = tmp_path / "mlflow.db"
    folder.mkdir()
    uri = f"sqlite:///{folder}"
    started = time.monotonic()
    result = step(uri, tmp_path)
    assert_one_line(
        result,
        f"error: the tracking store {uri} is a folder ({folder}), not a SQLite file; give a file path, e.g. sqlite:///mlflow.db",
    )
    assert time.monotonic() - started < SECONDS  # MLflow alone retries for about 107 s
    assert list(folder.iterdir()) == []


def test_a_store_in_a_folder_that_does_not_exist_is_refused_and_the_folder_never_created(tmp_path):
    database = tmp_path / "missing" / "dir" / "x.db"
    uri = f"sqlite:///{database}"
    result = step(uri, tmp_path)
    assert_one_line(
        result,
        f"error: the tracking store {uri} cannot be created: its folder {database.parent} does not exist; "
        "give a path in an existing folder",
    )
    assert not (tmp_path / "missing").exists()


def test_a_store_under_a_file_is_refused_naming_the_file(tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("not a folder\n")
    uri = f"sqlite:///{notes / 'mlflow.db'}"
    result = step(uri, tmp_path)
    assert_one_line(
        result,
        f"error: the tracking store {uri} cannot be created: its folder {notes} is a file; give a path in an existing folder",
    )
    assert notes.read_text() == "not a folder\n"


def closed_port() -> int:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        return listener.getsockname()[1]


def test_a_server_refusing_connections_is_said_at_once_then_retried_within_the_bound_said(tmp_path):
    nowhere = f"http://127.0.0.1:{closed_port()}"
    started = time.monotonic()
    process = subprocess.Popen(
        INGEST,
        cwd=tmp_path,
        env=environment(nowhere, MLFLOW_HTTP_REQUEST_MAX_RETRIES="2", MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR="1"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    first = process.stdout.readline()
    said = time.monotonic() - started
    out, err = process.communicate(timeout=SECONDS)
    ended = time.monotonic() - started
    bound = 2 * 1 + 2  # a wait of 0, then 2 s; up to 1 s of MLflow's jitter each
    assert first.strip() == (
        f"the tracking server {nowhere} does not accept connections (connection refused within 3 s); "
        f"retrying for at most about {bound} s (MLFLOW_HTTP_REQUEST_MAX_RETRIES=2, MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR=1)"
    )
    assert said < 10
    assert ended - said < bound + 5  # the retries end within the bound (a few seconds of requests beside)
    assert process.returncode == 1
    assert (
        err.strip()
        == f"error: cannot reach the tracking server {nowhere} (connection refused); is it running? (make server starts one)"
    )


class _NotMLflow(http.server.BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.send_response(404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_POST

    def log_message(self, *args) -> None:
        pass


def test_an_address_that_is_no_mlflow_server_is_named_so(tmp_path):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _NotMLflow)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    address = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        result = step(address, tmp_path)
    finally:
        server.shutdown()
    assert_one_line(
        result,
        f"error: the tracking store {address} answered /api/2.0/mlflow/runs/create with HTTP 404 and no MLflow "
        "response: it is not an MLflow tracking server; give the address `mlflow server` listens on",
    )


def step_running(database: Path) -> bool:
    """Whether a step has opened its run in the store: its run holds the step's process tag."""
    try:
        with contextlib.closing(sqlite3.connect(f"{database.as_uri()}?mode=ro", uri=True, timeout=1)) as db:
            return db.execute("SELECT count(*) FROM tags WHERE key = ?", (names.TAG_PROCESS,)).fetchone()[0] > 0
    except sqlite3.Error:
        return False


def delete_once_a_step_runs(database: Path, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + 120
    while not step_running(database) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    database.unlink()


def test_a_store_deleted_mid_run_is_named_deleted_in_one_line(tmp_path):
    database = tmp_path / "mlflow.db"
    uri = f"sqlite:///{database}"
    ok(step(uri, tmp_path, command=CHECK, timeout=120))
    process = subprocess.Popen(
        INGEST, cwd=tmp_path, env=environment(uri), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    delete_once_a_step_runs(database, process)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 1, err[-3000:]
    assert err.strip() == (
        f"error: the tracking store {uri} was deleted during the run ({database} is gone); "
        "the runs it held are lost: start again on a new store"
    )
    assert not database.exists()  # not created again, empty


def test_a_store_deleted_before_its_launched_step_starts_is_not_made_again(tmp_path):
    database = tmp_path / "mlflow.db"
    uri = sandbox.new_sqlite_store(tmp_path)
    launched = mlflow.MlflowClient(tracking_uri=uri).create_run("0").info.run_id  # as `mlflow run` does
    database.unlink()
    result = step(uri, tmp_path, MLFLOW_RUN_ID=launched)
    assert_one_line(
        result,
        f"error: the tracking store {uri} was deleted during the run ({database} is gone); "
        "the runs it held are lost: start again on a new store",
    )
    assert not database.exists()


def test_a_store_deleted_under_mlflow_run_is_named_by_the_step_and_never_made_again(tmp_path):
    project = sandbox.snapshot(tmp_path / "project")
    database = tmp_path / "mlflow.db"
    uri = f"sqlite:///{database}"
    ok(step(uri, tmp_path, command=CHECK, timeout=120))
    process = subprocess.Popen(
        [*MLFLOW_RUN, str(project), "-e", "ingest", "--env-manager", "local"],
        cwd=tmp_path,
        env=environment(uri),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    delete_once_a_step_runs(database, process)
    out, _ = process.communicate(timeout=300)
    assert process.returncode != 0
    # After the step's line, `mlflow run` itself fails to end the run in the deleted file (MLflow's traceback).
    assert (
        f"error: the tracking store {uri} was deleted during the run ({database} is gone); "
        "the runs it held are lost: start again on a new store"
    ) in out.splitlines(), out[-3000:]
    assert not database.exists()


def test_a_new_store_created_first_lets_two_mlflow_runs_start_together(tmp_path):
    # Without the store made first, both `mlflow run` create its tables at once and the second may
    # die in MLflow's migration (table _alembic_tmp_experiments already exists) before any step.
    project = sandbox.snapshot(tmp_path / "project")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    created = step(uri, tmp_path, command=CHECK, timeout=120)
    ok(created)
    assert last_line(created.stdout) == f"tracking store {uri}: ready"
    command = [*MLFLOW_RUN, str(project), "-e", "ingest", "--env-manager", "local"]
    runs = [
        subprocess.Popen(
            command, cwd=tmp_path, env=environment(uri), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        for _ in range(2)
    ]
    for run in runs:
        out, _ = run.communicate(timeout=600)
        assert run.returncode == 0, out[-3000:]


def test_the_store_check_creates_nothing_for_a_bad_store(tmp_path):
    database = tmp_path / "missing" / "x.db"
    result = step(f"sqlite:///{database}", tmp_path, command=CHECK)
    assert result.returncode == 1 and "does not exist" in last_line(result.stderr)
    assert list(tmp_path.iterdir()) == []
