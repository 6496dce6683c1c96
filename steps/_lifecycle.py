"""A step's process: it stops when whoever launched it ends, and on a hang-up.

`mlflow run` does not forward SIGTERM to the entry point's process, and a sweep killed with -9
cannot stop its children: without this, both go on training with nobody waiting for them.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from madness import names
from steps import _processes as processes

POLL_SECONDS = 1.0
RESTORE_WAIT_SECONDS = 600.0
# Ending the runs takes a few seconds; a store that hangs must not keep a stopped step alive for
# good (the next sweep or report ends a run left RUNNING once its process is gone).
CLEANUP_SECONDS = 30.0


class Interrupted(KeyboardInterrupt):
    """A signal, or the launcher's end: the step stops and its run ends KILLED."""


_reason: list[str] = []  # why the watch stopped this process, for the one-line error


def stop_reason(err: BaseException) -> str:
    if _reason:
        return _reason[-1]
    return f"interrupted ({err.args[0]})" if err.args else "interrupted"


_stopping = threading.Event()  # the step's Interrupted is raised: it is ending its runs
_signalled = threading.Event()  # a stopping signal arrived (its raise may wait for a store call)


def stopping() -> bool:
    return _stopping.is_set()


def _interrupt(signum, frame):
    """Stop the step on the first stopping signal, by raising Interrupted; ignore later ones, except
    a second SIGINT, which exits at once without ending the runs.

    Promises: the clean-up (ending the runs KILLED) is never broken by a second exception, and is
    cut after CLEANUP_SECONDS from the first signal. A signal that lands inside a call of a SQL
    store is raised as that call returns, so the call releases its database lock before the
    clean-up writes to the same database; a call to a tracking server holds no lock and is cut at once."""
    name = signal.Signals(signum).name
    if _stopping.is_set():
        if signum == signal.SIGINT:
            _exit_now(f"{name} again: exiting without ending its runs")
        return
    if not _signalled.is_set():
        _signalled.set()
        _exit_after(
            CLEANUP_SECONDS, f"still ending its runs {CLEANUP_SECONDS:.0f} s after {name}; exiting without them"
        )
    store_call = outermost_sql_store_frame(frame)
    if store_call is not None:
        _raise_as_it_returns(store_call, name)
        return
    _stopping.set()
    raise Interrupted(f"signal {name}")


def sql_store_code(module: str) -> bool:
    """SQLAlchemy, or MLflow's code of its SQL stores (mlflow.store.tracking.sqlalchemy_store,
    mlflow.store.db.utils, ...), where a connection or cursor may be open."""
    if module.startswith(("sqlalchemy.", "mlflow.store.db")) or module == "sqlalchemy":
        return True
    return module.startswith("mlflow.store.") and ("sqlalchemy" in module or "dbmodels" in module)


def outermost_sql_store_frame(frame):
    """The frame of the SQL store call the interrupted code is in (the outermost frame of such code
    on the stack), or None."""
    outermost = None
    while frame is not None:
        if sql_store_code(frame.f_globals.get("__name__", "")):
            outermost = frame
        frame = frame.f_back
    return outermost


def _raise_as_it_returns(store_call, name: str) -> None:
    """Raise Interrupted in the caller of `store_call` as that call returns or unwinds: Python's
    trace hook, on for this thread until then (the global hook traces no new frame)."""

    def on_event(frame, event, arg):
        if event == "return":
            sys.settrace(None)
            _stopping.set()
            raise Interrupted(f"signal {name}")
        return on_event

    store_call.f_trace_lines = False
    store_call.f_trace = on_event
    sys.settrace(lambda *args: None)


def _exit_now(why: str) -> None:
    print(f"error: {why}", file=sys.stderr, flush=True)
    os._exit(130)


def _exit_after(seconds: float, why: str) -> None:
    timer = threading.Timer(seconds, _exit_now, (why,))
    timer.daemon = True
    timer.start()


def handle_signals() -> None:
    """SIGTERM (schedulers, `timeout`, MLflow cancelling a child), SIGINT and SIGHUP stop the step
    once, with a bounded clean-up. A SIGHUP ignored at start (nohup) stays ignored: the user asked
    for that."""
    signal.signal(signal.SIGTERM, _interrupt)
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, _interrupt)
    if signal.getsignal(signal.SIGHUP) is not signal.SIG_IGN:
        signal.signal(signal.SIGHUP, _interrupt)


def watched_tokens() -> list[str]:
    """The processes whose end stops this one: those a launching step named (MADNESS_WATCH), and
    this process's own launcher chain (steps._processes.launcher_chain)."""
    inherited = [token for token in os.environ.get(names.ENV_WATCH, "").split(",") if token]
    own = [processes.process_token(pid) for pid in processes.launcher_chain()]
    return list(dict.fromkeys([*inherited, *own]))


class LauncherWatch:
    """While the block runs, interrupt this process (as SIGTERM would) once a watched process ends;
    children launched meanwhile inherit the watch list with this process added."""

    def __init__(self, tokens: list[str], poll: float = POLL_SECONDS):
        self.tokens, self.poll = tokens, poll
        self._stop = threading.Event()
        self._saved_env = None

    def _watch(self) -> None:
        while not self._stop.wait(self.poll) and not _stopping.is_set():
            token = processes.gone(self.tokens)
            if token is not None:
                _reason.append(f"stopped: the process that launched it (pid {token.partition(':')[0]}) ended")
                os.kill(os.getpid(), signal.SIGTERM)
                return

    def __enter__(self) -> LauncherWatch:
        self._saved_env = os.environ.get(names.ENV_WATCH)
        os.environ[names.ENV_WATCH] = ",".join([*self.tokens, processes.process_token()])
        if self.tokens and threading.current_thread() is threading.main_thread():
            threading.Thread(target=self._watch, name="launcher-watch", daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._saved_env is None:
            os.environ.pop(names.ENV_WATCH, None)
        else:
            os.environ[names.ENV_WATCH] = self._saved_env


def mlflow_run_launcher() -> str | None:
    """The token of the `mlflow run` process that launched this step (through `sh -c`), if any."""
    chain = processes.launcher_chain()
    if chain and processes.is_mlflow_run(processes.command_line(chain[-1])):
        return processes.process_token(chain[-1])
    return None


def keep_status_past_launcher(run_id: str | None, status: str) -> None:
    """`mlflow run` ends the run it launched FAILED once the command exits non-zero, even when the
    command ended it itself: MLflow 3.17's check of the stored status compares a string with
    RunStatus numbers, so it never sees the run has ended. A detached watcher waits for that
    launcher to exit, then puts this status back."""
    launcher = mlflow_run_launcher() if run_id else None
    if launcher is None:
        return
    subprocess.Popen(
        [sys.executable, "-m", "steps._lifecycle", "restore", launcher, run_id, status],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        cwd=Path(__file__).resolve().parent.parent,
    )


def restore(launcher: str, run_id: str, status: str) -> None:
    import mlflow

    from steps._runs import Status, end_run

    deadline = time.monotonic() + RESTORE_WAIT_SECONDS
    while processes.token_alive(launcher) and time.monotonic() < deadline:
        time.sleep(0.2)
    end_run(mlflow.MlflowClient(), run_id, Status(status), only=Status.FAILED)


if __name__ == "__main__" and sys.argv[1:2] == ["restore"]:
    restore(*sys.argv[2:5])
