"""The tracking store checked before MLflow touches it, so that each fault is one line naming the store
and what is accepted (the faults, and what MLflow does without the check: docs/reliability.md).

`python -m steps._store_check` checks the store of MLFLOW_TRACKING_URI and creates it when it is new:
MLflow creates a SQLite store's tables on first use, and two `mlflow run` started together on a new
store both try to, the second failing inside MLflow before any step runs. `make run` runs it first.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import socket
import sqlite3
import urllib.parse
import urllib.request
from pathlib import Path

import mlflow
from mlflow.environment_variables import (
    MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR,
    MLFLOW_HTTP_REQUEST_BACKOFF_JITTER,
    MLFLOW_HTTP_REQUEST_MAX_RETRIES,
)
from mlflow.store.db.db_types import DATABASE_ENGINES

from madness.errors import UserError
from steps._failures import deleted_store, sqlite_path, unwritable, without_credentials

SQLITE_HEADER = b"SQLite format 3\x00"  # the first 16 bytes of every SQLite 3 database file
MLFLOW_TABLES = {"experiments", "alembic_version"}  # a store being created may hold either first
CONNECT_SECONDS = 3
# The schemes MLflow's tracking-store registry knows, besides the SQL databases and plugins.
SCHEMES = {"", "file", "http", "https", "databricks", "databricks-uc", "uc"}
ACCEPTED = "sqlite:///<file>.db, http(s)://<server>, postgresql://, mysql://, mssql:// or file:<folder>"


def check_tracking_store() -> None:
    """Raise UserError, in one line naming the store, when the tracking store cannot be an MLflow
    store or, a local one (a SQLite file, a file: folder), cannot be written; say at once when its
    server does not answer. Nothing is created or written."""
    uri = mlflow.get_tracking_uri()
    shown = without_credentials(uri)
    parts = urllib.parse.urlsplit(uri)
    plugins = {entry.name for entry in importlib.metadata.entry_points(group="mlflow.tracking_store")}
    if parts.scheme.split("+")[0] not in SCHEMES | set(DATABASE_ENGINES) | plugins:
        raise UserError(f"the tracking store {shown} has an unknown scheme {parts.scheme!r}; accepted: {ACCEPTED}")
    database = sqlite_path(uri)
    if database is not None:
        problem = sqlite_problem(database)
        if problem:
            raise UserError(f"the tracking store {shown} {problem}")
        # `mlflow run` made this step's run in the store: a file gone since is a store deleted, not a new one.
        if os.environ.get("MLFLOW_RUN_ID") and (deleted := deleted_store()):
            raise UserError(deleted)
        needed = [database, database.parent]  # SQLite writes its journal beside the database
    elif parts.scheme in ("", "file"):
        needed = [Path(urllib.parse.unquote(parts.path) if parts.scheme else uri)]
    else:
        if parts.scheme in ("http", "https"):
            announce_unreachable(uri)
        return
    # MLflow would print its SQL and traceback for a database it cannot write, and try for about
    # 100 s to create one in a folder it cannot write.
    for path in needed:
        if why := unwritable(path):
            raise UserError(f"the tracking store {shown} cannot be written: {why}")


def sqlite_problem(database: Path) -> str | None:
    """Return why `database` cannot be an MLflow SQLite store, or None (an MLflow store, or a new one)."""
    if database.is_dir():
        return f"is a folder ({database}), not a SQLite file; give a file path, e.g. sqlite:///mlflow.db"
    if not database.parent.is_dir():
        what = "is a file" if database.parent.exists() else "does not exist"
        return f"cannot be created: its folder {database.parent} {what}; give a path in an existing folder"
    if not database.exists():
        return None
    try:
        with database.open("rb") as file:
            header = file.read(len(SQLITE_HEADER))
    except OSError as err:
        return f"cannot be read: {database}: {err.strerror}"
    if not header:
        return None  # an empty file is an empty SQLite database: MLflow makes it a store
    if header != SQLITE_HEADER:
        return f"is not a SQLite database: {database} starts with {header[:8]!r}; give an MLflow SQLite store or a new file"
    try:
        # Read-only and without creating a journal: only the names of its tables are read.
        with contextlib.closing(sqlite3.connect(f"{database.resolve().as_uri()}?mode=ro", uri=True, timeout=10)) as db:
            tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    except sqlite3.DatabaseError as err:
        if "locked" in str(err):
            return None  # another step is writing it: MLflow waits for its lock too
        return f"is a damaged SQLite database ({database}: {err}); give an MLflow SQLite store or a new file"
    if tables and not tables & MLFLOW_TABLES:
        listed = ", ".join(sorted(tables)[:5])
        return (
            f"is another application's SQLite database ({database}, tables {listed}), not an MLflow store; "
            "give an MLflow store or a new file"
        )
    return None


def retry_seconds() -> float:
    """Return how long MLflow's retries of a refused request last at most: urllib3 waits 0, then
    factor x 2, 4, 8... seconds between attempts, plus up to MLflow's jitter each."""
    retries, factor = MLFLOW_HTTP_REQUEST_MAX_RETRIES.get(), MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR.get()
    waits = sum(factor * 2 ** (attempt - 1) for attempt in range(2, retries + 1))
    return waits + retries * MLFLOW_HTTP_REQUEST_BACKOFF_JITTER.get()


def announce_unreachable(uri: str) -> None:
    """Print one line at once when the tracking server does not accept a connection within
    CONNECT_SECONDS, with the bound of MLflow's retries that follow (a restarting server may return)."""
    parts = urllib.parse.urlsplit(uri)
    if urllib.request.getproxies() and not urllib.request.proxy_bypass(parts.hostname or ""):
        return  # reached through a proxy: a direct connection proves nothing
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        socket.create_connection((parts.hostname, port), timeout=CONNECT_SECONDS).close()
        return
    except OSError as err:
        why = "no answer" if isinstance(err, TimeoutError) else (err.strerror or str(err)).lower()
    print(
        f"the tracking server {without_credentials(uri)} does not accept connections ({why} within {CONNECT_SECONDS} s); "
        f"retrying for at most about {retry_seconds():.0f} s "
        f"(MLFLOW_HTTP_REQUEST_MAX_RETRIES={MLFLOW_HTTP_REQUEST_MAX_RETRIES.get()}, "
        f"MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR={MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR.get()})",
        flush=True,  # on stdout, as the retries' own lines: stderr keeps the error alone
    )


def create_store(argv=None) -> None:
    """Create the tracking store's tables when it is new (MLflow does on first use); say it is ready."""
    mlflow.MlflowClient().search_experiments(max_results=1)
    print(f"tracking store {without_credentials(mlflow.get_tracking_uri())}: ready")


if __name__ == "__main__":
    from steps._entry import entry_point, run_as_script  # which checks the store first

    run_as_script(entry_point(create_store))
