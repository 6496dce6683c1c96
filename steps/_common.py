"""What every entry point shares: one-line user errors, clean run endings, data loading and logging."""

from __future__ import annotations

import errno
import functools
from contextlib import contextmanager, nullcontext
import hashlib
import logging
import os
import warnings
import subprocess
import sys
import time
import traceback
import urllib.parse
from pathlib import Path

import mlflow
import mlflow.pyfunc
from mlflow.exceptions import MlflowException
from mlflow.store.artifact.mlflow_artifacts_repo import MlflowArtifactsRepository
from mlflow.store.artifact.runs_artifact_repo import RunsArtifactRepository
import yaml

from madness import dataset as D
from madness import names as n
from madness.errors import UserError
from madness.model import import_keras
from steps import _lifecycle
from steps._coordination import Heartbeat, liveness_tags


PROJECT_ROOT = Path(__file__).resolve().parent.parent


# MLflow's own defaults retry a failed request for about four minutes, silently; a step gives up
# after about half a minute (0+2+4+8+16 s of back-off), long enough for a restarted server to return.
HTTP_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "5", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
                 "MLFLOW_HTTP_REQUEST_TIMEOUT": "30"}
SINGLE_ATTEMPT = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "5"}


class _RetryNotice(logging.Handler):
    """urllib3 retries a failed store request quietly (its logger has a NullHandler): say so, one line each."""

    def emit(self, record: logging.LogRecord) -> None:
        if not str(record.msg).startswith("Retrying") or len(record.args or ()) < 2:
            return
        retries, cause = record.args[0], record.args[1]
        why = "connection refused" if "refused" in repr(cause).lower() else type(cause).__name__
        left = getattr(retries, "total", "?")
        print(f"tracking server {without_credentials(mlflow.get_tracking_uri())} not answering ({why}); "
              f"retrying ({left} left)", flush=True)


def _announce_retries() -> None:
    pool = logging.getLogger("urllib3.connectionpool")
    if not any(isinstance(h, _RetryNotice) for h in pool.handlers):
        pool.addHandler(_RetryNotice(logging.WARNING))


def entry_point(main):
    """Run `main`; a UserError or a failing store prints one line and exits 1; any failure ends the active run FAILED."""

    @functools.wraps(main)
    def wrapper(argv=None):
        _lifecycle.handle_signals()
        _lifecycle.remove_stale_temp_dirs()
        # TensorFlow's own C++ logging (CPU features, no CUDA, graph notes) would bury our one-line
        # errors; what its libraries log through absl as they load, import_keras leaves out.
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        # A new SQLite store announces its tables at INFO; the step's own lines say what it made.
        logging.getLogger("mlflow.store.db.utils").setLevel(logging.WARNING)
        for name, value in HTTP_DEFAULTS.items():
            os.environ.setdefault(name, value)
        _announce_retries()
        _drop_store_tracebacks()
        launched = os.environ.get("MLFLOW_RUN_ID")  # MLflow unsets it when the run ends
        try:
            check_local_store()
            with _lifecycle.LauncherWatch(_lifecycle.watched_tokens()):
                return main(argv)
        except UserError as err:
            _end_launched_run(launched, "FAILED")
            print(f"error: {err}", file=sys.stderr)
            sys.exit(1)
        except SystemExit as exit_:
            if exit_.code not in (0, None):
                _end_launched_run(launched, "FAILED")
            raise
        except KeyboardInterrupt as err:
            _end_launched_run(launched, "KILLED")
            _lifecycle.keep_status_past_launcher(launched, "KILLED")
            print(f"error: {_lifecycle.stop_reason(err)}", file=sys.stderr)
            sys.exit(130)
        except Exception as err:
            problem = store_failure(err)
            if problem is None:  # a bug: keep its traceback
                _end_active_run("FAILED")
                raise
            _end_launched_run(launched, "FAILED", quick=True)
            print(f"error: {problem}", file=sys.stderr)
            sys.exit(1)

    return wrapper


def _causes(err: BaseException):
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        yield err
        err = err.__cause__ or err.__context__


def store_failure(err: BaseException) -> str | None:
    """One line naming the store when `err` is the tracking or artifact store failing, else None."""
    import requests

    uri = without_credentials(mlflow.get_tracking_uri())
    for cause in _causes(err):
        code = getattr(cause, "error_code", None)
        if code == "UNAUTHENTICATED":
            return (f"the tracking server {uri} refused the request: not authenticated; "
                    "set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD")
        if code == "PERMISSION_DENIED":
            return f"the tracking server {uri} refused the request: permission denied for user {os.environ.get('MLFLOW_TRACKING_USERNAME', '?')}"
        if isinstance(cause, requests.exceptions.RetryError):
            return f"the tracking server {uri} kept failing with server errors (HTTP 5xx); is its database up?"
        if isinstance(cause, requests.exceptions.Timeout):
            return f"the tracking server {uri} did not answer within {os.environ.get('MLFLOW_HTTP_REQUEST_TIMEOUT')} s"
        if isinstance(cause, requests.exceptions.ConnectionError):
            why = "connection refused" if "refused" in str(cause) else "connection failed"
            return f"cannot reach the tracking server {uri} ({why}); is it running? (make server starts one)"
        if type(cause).__name__ == "OperationalError" and type(cause).__module__.startswith("sqlalchemy"):
            first = str(cause.orig if getattr(cause, "orig", None) else cause).strip().splitlines()[0]
            return f"the tracking store {uri} failed: {first}"
        if type(cause).__name__ in ("EndpointConnectionError", "ConnectTimeoutError", "NoCredentialsError"):
            return f"cannot reach the artifact store: {cause}"
        if isinstance(cause, OSError) and cause.errno in _UNWRITABLE and _raised_in(cause, "store"):
            which = "the artifact store" if _raised_in(cause, "store", "artifact") else f"the tracking store {uri}"
            return f"{which} cannot be written: {cause.filename}: {cause.strerror}"
        if isinstance(cause, MlflowException) and "MLFLOW_ALLOW_FILE_STORE" in cause.message:
            return (f"the tracking store {uri} is a file store, which MLflow {mlflow.__version__} refuses unless "
                    "MLFLOW_ALLOW_FILE_STORE=true; use a database, e.g. sqlite:///mlflow.db")
    return None


_UNWRITABLE = (errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOSPC)


def _raised_in(err: BaseException, *package: str) -> bool:
    """Whether `err` was raised inside mlflow.<package...> (e.g. "store", "artifact")."""
    folder = os.path.join(os.path.dirname(mlflow.__file__), *package) + os.sep
    return any(frame.filename.startswith(folder) for frame in traceback.extract_tb(err.__traceback__))


def unwritable(path: Path) -> str | None:
    """Why a file or folder at `path` could not be written or created, or None. Nothing is created."""
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    missing = f"its folder {path.parent} is missing and cannot be created: " if existing not in (path, path.parent) else ""
    if existing != path and not existing.is_dir():
        return f"{missing}{existing} is a file, not a folder"
    if not os.access(existing, os.W_OK | (os.X_OK if existing.is_dir() else 0)):
        why = "is on a read-only file system" if os.statvfs(existing).f_flag & os.ST_RDONLY else "is not writable (permission denied)"
        return f"{missing}{existing} {why}"
    return None


def check_local_store() -> None:
    """Refuse a local tracking store (a SQLite file, a file: folder) that cannot be written, before
    any store call: MLflow would print its SQL and traceback for a database it cannot write, and try
    for about 100 s to create one in a folder it cannot write."""
    uri = mlflow.get_tracking_uri()
    scheme = urllib.parse.urlsplit(uri).scheme
    if uri.startswith("sqlite:///"):
        database = uri.removeprefix("sqlite:///").split("?")[0]
        if database in ("", ":memory:"):
            return
        needed = [Path(database), Path(database).parent]  # SQLite writes its journal beside the database
    elif scheme in ("", "file"):
        needed = [Path(urllib.parse.unquote(urllib.parse.urlsplit(uri).path) if scheme else uri)]
    else:
        return
    for path in needed:
        why = unwritable(path)
        if why:
            raise UserError(f"the tracking store {without_credentials(uri)} cannot be written: {why}")


class _DropStoreTraceback(logging.Filter):
    """MLflow's SQL store logs the whole traceback (and the SQL) of a database error before raising
    it; the step then says it in one line (store_failure), or tidies up after it quietly."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("SQLAlchemy database error")


def _drop_store_tracebacks() -> None:
    store = logging.getLogger("mlflow.store.db.utils")
    if not any(isinstance(f, _DropStoreTraceback) for f in store.filters):
        store.addFilter(_DropStoreTraceback())


@contextmanager
def single_attempt():
    """Store calls in this block try once, briefly: used to tidy up after the store has failed."""
    saved = {name: os.environ.get(name) for name in SINGLE_ATTEMPT}
    os.environ.update(SINGLE_ATTEMPT)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _end_launched_run(run_id: str | None, status: str, quick: bool = False) -> None:
    """End the step's run and, under `mlflow run`, the run MLflow made for it before the step
    started (`run_id`, from MLFLOW_RUN_ID): bad arguments or an interrupt can stop a step before it
    opens that run, and when launched asynchronously or orphaned nobody else would end it."""
    _end_active_run(status, quick)
    if run_id:
        with single_attempt() if quick else nullcontext():
            try:
                client = mlflow.MlflowClient()
                if client.get_run(run_id).info.status == "RUNNING":
                    client.set_terminated(run_id, status)
            except Exception:  # the store is unreachable: the next sweep ends it (its process is gone)
                pass


def _end_active_run(status: str, quick: bool = False) -> None:
    with single_attempt() if quick else nullcontext():
        while mlflow.active_run() is not None:
            try:
                mlflow.end_run(status)  # pops the run before it calls the store
            except Exception:  # the store is unreachable: the next sweep ends it (its process is gone)
                pass


def _git(args: list[str], cwd: Path) -> bytes:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, check=True).stdout


def git_state(path: Path = Path(".")) -> dict[str, str]:
    """Whether the working tree differs from its commit, and a hash of exactly what it holds.

    The hash covers the commit, the diff against it and every untracked, non-ignored file, so two
    runs with equal `git.state` ran the same code even when the tree was dirty. Empty outside git.
    """
    try:
        commit = _git(["rev-parse", "HEAD"], path)
        diff = _git(["diff", "HEAD", "--binary"], path)
        untracked = [name for name in _git(["ls-files", "--others", "--exclude-standard", "-z"], path).split(b"\0") if name]
    except (OSError, subprocess.CalledProcessError):
        return {}
    digest = hashlib.sha256(commit + b"\0" + diff)
    for name in sorted(untracked):
        file = Path(path) / name.decode()
        digest.update(b"\0" + name + b"\0" + (file.read_bytes() if file.is_file() else b""))
    return {n.TAG_DIRTY: "true" if diff or untracked else "false", n.TAG_STATE: digest.hexdigest()}


@contextmanager
def start_run(entry: str, raw_params: dict[str, str], **kwargs):
    """Start (or, under `mlflow run`, resume) the run; log params once, as given, source and process
    tags; keep its heartbeat while the block runs; end it FINISHED, FAILED, or KILLED on an interrupt."""
    run = mlflow.start_run(**kwargs)
    try:
        # Under `mlflow run` the params are already logged, shell-quoted by MLflow ('' for an empty
        # string); logging them again with another string would be refused, so only the missing ones go in.
        logged = mlflow.get_run(run.info.run_id).data.params
        mlflow.log_params({k: v for k, v in raw_params.items() if k not in logged})
        mlflow.set_tags({n.TAG_ENTRY_POINT: entry, **git_state(PROJECT_ROOT), **liveness_tags()})
        with Heartbeat(run.info.run_id):
            yield run
    except BaseException as err:
        quick = isinstance(err, Exception) and store_failure(err) is not None
        _end_active_run("KILLED" if isinstance(err, KeyboardInterrupt) else "FAILED", quick)
        raise
    mlflow.end_run("FINISHED")


def seasons_of(values: dict) -> D.Seasons:
    return D.Seasons(values["first_season"], values["val_season"], values["test_season"], values["last_season"]).check()


def build_features(values: dict, workdir: Path) -> D.Built:
    files, synthetic_data = D.read_inputs(values["data"], values["league"], values["seed"], Path(workdir) / "raw")
    return D.build(files, seasons_of(values), synthetic_data)


def load_features(uri: str, workdir: Path) -> D.Built:
    try:
        local = mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(workdir))
    except Exception as err:  # MLflow raises several types for a bad URI
        raise UserError(f"cannot read features from {uri!r}: {str(err).splitlines()[0]}") from None
    return D.load(Path(local))


def features_source(features_uri: str) -> str:
    """Where the rows of a features folder (an ingest run's runs:/<id>/features, or any artifact
    URI) can be fetched: its games.csv, as a URI MLflow's dataset sources resolve on every store.

    A local path and an s3:// object resolve as they are; behind a server that proxies artifacts
    (mlflow-artifacts:, which no dataset source accepts) it is the server's own HTTP address of the
    file, so the UI's dataset view links to it.
    """
    folder = RunsArtifactRepository.get_underlying_uri(features_uri) if features_uri.startswith("runs:/") else features_uri
    games = f"{folder.rstrip('/')}/{n.GAMES_FILE}"
    if urllib.parse.urlparse(games).scheme == "mlflow-artifacts":
        games = without_credentials(MlflowArtifactsRepository.resolve_uri(games, mlflow.get_tracking_uri()))
    return games


def without_credentials(uri: str) -> str:
    """The URI with any user:password@ taken out: URIs are logged and printed."""
    parts = urllib.parse.urlsplit(uri)
    if parts.username is None and parts.password is None:
        return uri
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def log_data(built: D.Built, source: str) -> None:
    """Tag the data's origin and digest, log the manifest and each split as an MLflow dataset.
    `source`: the data folder (or 'synthetic') the features were built from, or features_source()."""
    mlflow.set_tags({
        n.TAG_SYNTHETIC: str(built.manifest["synthetic"]).lower(),
        n.TAG_DATA_DIGEST: built.manifest["digest"],
    })
    mlflow.log_dict(built.manifest, f"{n.FEATURES_DIR}/{n.MANIFEST_FILE}")
    for split in (n.TRAIN, n.VAL, n.TEST):
        rows = built.games[built.games[n.SPLIT] == split]
        # MLflow warns that a plain path "can be interpreted in multiple ways" (each way reads the
        # same file) and, as log_input infers the table's schema, that integer columns cannot hold
        # missing values (a hint for models scoring such columns): neither applies to these tables.
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "The specified dataset source can be interpreted in multiple ways", UserWarning)
            warnings.filterwarnings("ignore", "Hint: Inferred schema contains integer column", UserWarning)
            dataset = mlflow.data.from_pandas(rows, source=source, name=f"tournament_{split}", targets=n.TARGET)
            log_input_once_stored(dataset, split, built.manifest["digest"])


def log_input_once_stored(dataset, split: str, digest: str, attempts: int = 4) -> None:
    """Log the dataset input. Two runs logging the same new dataset at once race in MLflow's SQL
    store (it looks the dataset up, then inserts it): on PostgreSQL the loser gets a unique-key
    violation. Logging again then finds the winner's row and links it."""
    for attempt in range(attempts):
        try:
            mlflow.log_input(dataset, context=split, tags={"data_digest": digest})
            return
        except MlflowException as err:
            if attempt == attempts - 1 or not is_duplicate_key(err):
                raise
            time.sleep(0.2 * (attempt + 1))


def is_duplicate_key(err: Exception) -> bool:
    text = str(err)
    return "UniqueViolation" in text or "UNIQUE constraint failed" in text or "Duplicate entry" in text


# What the served model imports; the store drivers (boto3, psycopg) and the plotting stay out of its environment.
MODEL_PACKAGES = ("mlflow", "tensorflow", "keras", "numpy", "pandas")


def project_pins() -> list[str]:
    """conda.yaml's direct pins."""
    env = yaml.safe_load((PROJECT_ROOT / "conda.yaml").read_text())
    pip = next(dep["pip"] for dep in env["dependencies"] if isinstance(dep, dict))
    return [line for line in pip if not line.startswith("-")]


def model_pins() -> list[str]:
    """The served model's requirements: conda.yaml's pins of the packages it imports, at training's versions."""
    return [pin for pin in project_pins() if pin.split("==")[0] in MODEL_PACKAGES]


temp_dir = _lifecycle.temp_dir


def load_model(uri: str):
    """Load a pyfunc model; return it with the id of the run that made it and its input columns."""
    try:
        info = mlflow.models.get_model_info(uri)
        import_keras()  # what the model's code imports, here without TensorFlow's load-time notices
        model = mlflow.pyfunc.load_model(uri)
    except Exception as err:  # MLflow raises several types for a missing run, model or alias
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UserError(f"cannot load model {uri!r} (give runs:/<run id>/model or models:/<name>@<alias>): {first}") from None
    return model, info.run_id, model.metadata.get_input_schema().input_names()


def require_columns(frame, columns: list[str], what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise UserError(
            f"the model needs feature {missing[0]!r} (and {len(missing) - 1} more) that {what} lacks; "
            "box-score features need *RegularSeasonDetailedResults.csv for every league"
        )


def read_data_for_model(values: dict, model_run: str | None, workdir: Path):
    """What evaluate and predict share: tag the model's run, read and assemble the data, tag and
    log its manifest. Returns (league files, all tournament rows, team-season table)."""
    if model_run:
        mlflow.set_tag(n.TAG_EVALUATED, model_run)
    files, synthetic_data = D.read_inputs(values["data"], values["league"], values["seed"], Path(workdir) / "raw")
    games, team_season, manifest = D.assemble(files, synthetic_data)
    mlflow.set_tags({n.TAG_SYNTHETIC: str(synthetic_data).lower(), n.TAG_DATA_DIGEST: manifest["digest"]})
    mlflow.log_dict(manifest, f"{n.FEATURES_DIR}/{n.MANIFEST_FILE}")
    return files, games, team_season
