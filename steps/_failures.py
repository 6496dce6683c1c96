"""One line for a failing store: what failed, where, and what to do; local paths that cannot be
written, said before MLflow tries them. Credentials never appear in a printed URI."""

from __future__ import annotations

import errno
import os
import re
import traceback
import urllib.parse
from pathlib import Path

import mlflow
from mlflow.exceptions import MlflowException

from madness.errors import first_line


def _causes(err: BaseException):
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        yield err
        err = err.__cause__ or err.__context__


def store_failure(err: BaseException) -> str | None:
    """Return one line naming the store when `err` is the tracking or artifact store failing (a SQLite store
    deleted meanwhile named as such), or an address that answers but is no MLflow server; else None."""
    if fault := _store_fault(err):
        return deleted_store() or fault
    # MLflow's client raises this for an answer with no MLflow error in it: a web page, another service, a wrong path
    answer = isinstance(err, MlflowException) and re.match(
        r"API request to endpoint (\S+) failed with error code (\d+)", str(err.message)
    )
    if not answer:
        return None
    return (
        f"the tracking store {without_credentials(mlflow.get_tracking_uri())} answered {answer[1]} with HTTP {answer[2]} "
        "and no MLflow response: it is not an MLflow tracking server; give the address `mlflow server` listens on"
    )


def _store_fault(err: BaseException) -> str | None:
    import requests

    uri = without_credentials(mlflow.get_tracking_uri())
    for cause in _causes(err):
        refused = {
            "UNAUTHENTICATED": "not authenticated; set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD",
            "PERMISSION_DENIED": f"permission denied for user {os.environ.get('MLFLOW_TRACKING_USERNAME', '?')}",
        }.get(getattr(cause, "error_code", None))
        if refused:
            return f"the tracking server {uri} refused the request: {refused}"
        if isinstance(cause, requests.exceptions.RetryError):
            return f"the tracking server {uri} kept failing with server errors (HTTP 5xx); is its database up?"
        if isinstance(cause, requests.exceptions.Timeout):
            return f"the tracking server {uri} did not answer within {os.environ.get('MLFLOW_HTTP_REQUEST_TIMEOUT')} s"
        if isinstance(cause, requests.exceptions.ConnectionError):
            why = "connection refused" if "refused" in str(cause) else "connection failed"
            return f"cannot reach the tracking server {uri} ({why}); is it running? (make server starts one)"
        if type(cause).__name__ == "OperationalError" and type(cause).__module__.startswith("sqlalchemy"):
            return f"the tracking store {uri} failed: {first_line(getattr(cause, 'orig', None) or cause)}"
        if type(cause).__name__ in ("EndpointConnectionError", "ConnectTimeoutError", "NoCredentialsError"):
            return f"cannot reach the artifact store: {cause}"
        if isinstance(cause, OSError) and cause.errno in _UNWRITABLE and _raised_in(cause, "store"):
            which = "the artifact store" if _raised_in(cause, "store", "artifact") else f"the tracking store {uri}"
            return f"{which} cannot be written: {cause.filename}: {cause.strerror}"
        if isinstance(cause, MlflowException) and "MLFLOW_ALLOW_FILE_STORE" in cause.message:
            return (
                f"the tracking store {uri} is a file store, which MLflow {mlflow.__version__} refuses unless "
                "MLFLOW_ALLOW_FILE_STORE=true; use a database, e.g. sqlite:///mlflow.db"
            )
    return None


def deleted_store() -> str | None:
    """Return one line when the SQLite store was deleted (or emptied) during the run, else None: SQLite
    then reports a read-only database, or tables that do not exist."""
    uri = mlflow.get_tracking_uri()
    database = sqlite_path(uri)
    if database is None or (database.exists() and database.stat().st_size > 0):
        return None
    return (
        f"the tracking store {uri} was deleted during the run ({database} is gone); "
        "the runs it held are lost: start again on a new store"
    )


def is_store_failure(err: BaseException) -> bool:
    """Return whether `err` is the tracking or artifact store failing (see store_failure)."""
    return isinstance(err, Exception) and store_failure(err) is not None


_UNWRITABLE = (errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOSPC)


def _raised_in(err: BaseException, *package: str) -> bool:
    """Return whether `err` was raised inside mlflow.<package...> (e.g. "store", "artifact")."""
    folder = os.path.join(os.path.dirname(mlflow.__file__), *package) + os.sep
    return any(frame.filename.startswith(folder) for frame in traceback.extract_tb(err.__traceback__))


def unwritable(path: Path) -> str | None:
    """Return why a file or folder at `path` could not be written or created, or None. Nothing is created."""
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    missing = (
        f"its folder {path.parent} is missing and cannot be created: " if existing not in (path, path.parent) else ""
    )
    if existing != path and not existing.is_dir():
        return f"{missing}{existing} is a file, not a folder"
    if not os.access(existing, os.W_OK | (os.X_OK if existing.is_dir() else 0)):
        why = (
            "is on a read-only file system"
            if os.statvfs(existing).f_flag & os.ST_RDONLY
            else "is not writable (permission denied)"
        )
        return f"{missing}{existing} {why}"
    return None


def sqlite_path(uri: str) -> Path | None:
    """Return the database file of a sqlite:/// URI (relative to the working folder, as MLflow reads it), or
    None for another scheme or an in-memory database."""
    if not uri.startswith("sqlite:///"):
        return None
    database = uri.removeprefix("sqlite:///").split("?")[0]
    return Path(database) if database not in ("", ":memory:") else None


def without_credentials(uri: str) -> str:
    """Return the URI with any user:password@ taken out: URIs are logged and printed."""
    parts = urllib.parse.urlsplit(uri)
    host = parts.netloc.rpartition("@")[2]
    return uri if host == parts.netloc else urllib.parse.urlunsplit(parts._replace(netloc=host))
