"""How every entry point starts and ends: one-line errors and exit codes, runs ended FINISHED,
FAILED or KILLED (never left RUNNING), the store's retries said aloud, the launcher watched."""

from __future__ import annotations

import atexit
import contextlib
import functools
import logging
import os
import subprocess
import sys
from pathlib import Path

import mlflow

from madness import git, names
from madness.errors import UserError
from madness.names import Status
from steps import _lifecycle
from steps._coordination import heartbeat, liveness_tags
from steps._failures import (
    is_store_failure,
    store_failure,
    without_credentials,
)
from steps._lifecycle import single_attempt
from steps._runs import end_run
from steps._store_check import check_tracking_store

PROJECT_ROOT = Path(__file__).resolve().parent.parent


# MLflow's own defaults retry a failed request for about four minutes, silently; a step gives up
# after about half a minute (0+2+4+8+16 s of back-off), long enough for a restarted server to return.
HTTP_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "5",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
}


class _RetryNotice(logging.Handler):
    """Print each retry of a store request as one line: urllib3 logs them to a NullHandler."""

    def emit(self, record: logging.LogRecord) -> None:
        """Print the server, why it failed and the retries left."""
        if not str(record.msg).startswith("Retrying") or len(record.args or ()) < 2:
            return
        retries, cause = record.args[0], record.args[1]
        why = "connection refused" if "refused" in repr(cause).lower() else type(cause).__name__
        left = getattr(retries, "total", "?")
        print(
            f"tracking server {without_credentials(mlflow.get_tracking_uri())} not answering ({why}); "
            f"retrying ({left} left)",
            flush=True,
        )


def _not_a_store_traceback(record: logging.LogRecord) -> bool:
    return not str(record.msg).startswith("SQLAlchemy database error")


def run_as_script(main) -> None:
    """Run the entry point of `python -m steps.<step>` and exit with its code, skipping the
    interpreter's teardown once the step has ended (finalizing TensorFlow's native libraries costs
    2 to 5 s a step and serves nothing then). The exit handlers registered while the step ran
    (MLflow's, TensorFlow's) run first; then logging and the streams are flushed and the process
    leaves. A step's bug (an exception that is not SystemExit) keeps the normal exit and its traceback."""
    ended = []
    atexit.register(_leave_without_teardown, ended)  # registered first, it runs after the step's handlers
    code = 0
    try:
        main()
    except SystemExit as exit_:
        code = exit_.code
    ended.append(code)
    sys.exit(code)


def _leave_without_teardown(ended: list) -> None:
    if not ended:
        return  # a bug: the normal exit, after its traceback
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    # sys.exit("message"): Python has printed it, and exits 1.
    os._exit(ended[0] if isinstance(ended[0], int) else 0 if ended[0] is None else 1)


def entry_point(main):
    """Wrap `main(argv)` to run with a checked store and the launcher watched; a failure ends the run FAILED
    (KILLED on an interrupt, exit 130). A UserError or a failing store prints one line, exit 1; a bug keeps
    its traceback."""

    @functools.wraps(main)
    def wrapper(argv=None):
        _lifecycle.handle_signals()
        # TensorFlow's own C++ logging (CPU features, no CUDA, graph notes) would bury our one-line
        # errors; what its libraries log through absl as they load, import_keras leaves out.
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        # Against a server MLflow prints "View run <name> at <url>" as each run ends (twice under
        # `mlflow run`), a link to the GenAI view of experiment 0; the report names the runs instead.
        os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
        # A new SQLite store announces its tables at INFO, and MLflow's SQL store logs a database error's
        # whole traceback and SQL before raising it: the step's own lines say what it made, or the error
        # in one line (store_failure), or it tidies up quietly.
        store_log = logging.getLogger("mlflow.store.db.utils")
        store_log.setLevel(logging.WARNING)
        store_log.addFilter(_not_a_store_traceback)  # once: addFilter skips a filter already there
        for name, value in HTTP_DEFAULTS.items():
            os.environ.setdefault(name, value)
        pool = logging.getLogger("urllib3.connectionpool")
        if not any(isinstance(handler, _RetryNotice) for handler in pool.handlers):
            pool.addHandler(_RetryNotice(logging.WARNING))
        launched = None  # a store that fails its check is left alone: ending a run there would create it, or fail
        try:
            check_tracking_store()
            launched = os.environ.get("MLFLOW_RUN_ID")  # MLflow unsets it when the run ends
            with _lifecycle.launcher_watch(_lifecycle.watched_tokens()):
                return main(argv)
        except UserError as err:
            _end_runs(Status.FAILED, launched)
            print(f"error: {err}", file=sys.stderr)
            sys.exit(1)
        except SystemExit as exit_:
            if exit_.code not in (0, None):
                _end_runs(Status.FAILED, launched)
            raise
        except KeyboardInterrupt:
            # Tagged why: `mlflow run` ends the run FAILED on seeing the exit code, and whoever finds it
            # so tagged ends it KILLED again (steps._runs.end_killed).
            if launched:
                with single_attempt(), contextlib.suppress(Exception):
                    mlflow.MlflowClient().set_tag(launched, names.TAG_STOPPED, _lifecycle.stop_reason())
            _end_runs(Status.KILLED, launched, quick=True)
            print(f"error: {_lifecycle.stop_reason()}", file=sys.stderr)
            sys.exit(130)
        except Exception as err:
            problem = store_failure(err)
            if problem is None:  # a bug: keep its traceback
                _end_runs(Status.FAILED)
                raise
            _end_runs(Status.FAILED, launched, quick=True)
            print(f"error: {problem}", file=sys.stderr)
            sys.exit(1)

    return wrapper


def _end_runs(status: Status, launched: str | None = None, quick: bool = False) -> None:
    """End the step's active runs and, under `mlflow run`, the run MLflow made for it before the step
    started (`launched`, from MLFLOW_RUN_ID): bad arguments or an interrupt can stop a step before it
    opens that run, and when launched asynchronously or orphaned nobody else would end it. When the
    store is unreachable, the next sweep ends them (their process is gone)."""
    with single_attempt() if quick else contextlib.nullcontext():
        while mlflow.active_run() is not None:
            with contextlib.suppress(Exception):  # end_run pops the run before it calls the store
                mlflow.end_run(status)
        if launched:
            with contextlib.suppress(Exception):
                end_run(mlflow.MlflowClient(), launched, status)


def project_commit() -> str | None:
    """Return the commit the project is at, None outside a git repository or without git."""
    try:
        return git.head(PROJECT_ROOT)
    except (OSError, subprocess.CalledProcessError):
        return None


def code_identity() -> dict[str, str | None]:
    """Return the code a run's results depend on, as the sweep's cache compares it: the commit (None
    outside git) and the working tree's exact state (None outside git; it also says dirtiness)."""
    return {names.TAG_COMMIT: project_commit(), names.TAG_STATE: git.state(PROJECT_ROOT).get(names.TAG_STATE)}


def commit_tag(tags: dict[str, str]) -> dict[str, str]:
    """Return the commit this code is at as a tag, when MLflow did not tag the run with it: MLflow reads it from the
    project folder it was given, which for another backend (a Kubernetes child's docker_env variant of
    MLproject) is not this repository. The sweep's cache finds reusable runs by it."""
    commit = None if names.TAG_COMMIT in tags else project_commit()
    return {names.TAG_COMMIT: commit} if commit else {}


@contextlib.contextmanager
def start_run(entry: str, raw_params: dict[str, str], **kwargs):
    """Start (or, under `mlflow run`, resume) the run; log params once, as given, source and process
    tags; keep its heartbeat while the block runs; end it FINISHED, FAILED, or KILLED on an interrupt."""
    run = mlflow.start_run(**kwargs)
    try:
        # Under `mlflow run` the params are already logged, shell-quoted by MLflow ('' for an empty
        # string); logging them again with another string would be refused, so only the missing ones go in.
        logged = mlflow.get_run(run.info.run_id).data
        mlflow.log_params({k: v for k, v in raw_params.items() if k not in logged.params})
        # A sweep's child names its sweep (MLflow made it the run's parent) before any other process can look.
        sweep = {names.TAG_SWEEP: logged.tags[names.TAG_PARENT_RUN]} if names.TAG_PARENT_RUN in logged.tags else {}
        mlflow.set_tags(
            {
                names.TAG_ENTRY_POINT: entry,
                **commit_tag(logged.tags),
                **git.state(PROJECT_ROOT),
                **liveness_tags(),
                **sweep,
            }
        )
        with heartbeat(run.info.run_id):
            yield run
        _lifecycle.check_stop()  # a step asked to stop as it finished still ends KILLED
    except BaseException as err:
        stopped = isinstance(err, KeyboardInterrupt) or _lifecycle.stop.is_set()  # a failure once asked to stop too
        _end_runs(Status.KILLED if stopped else Status.FAILED, quick=stopped or is_store_failure(err))
        raise
    mlflow.end_run(Status.FINISHED)
