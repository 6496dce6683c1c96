"""A step's process stops when it is asked to: by SIGTERM (schedulers, `timeout`, MLflow cancelling
a child), SIGINT, SIGHUP, or the end of whoever launched it.

Each of these only sets `stop`, with why; the step's loops check it (`check_stop`, `wait`) and raise
Interrupted from the step's own code, so a store call in flight completes and the runs end KILLED.
`mlflow run` does not forward SIGTERM to the entry point's process, and a sweep killed with -9
cannot stop its children: hence launcher_watch.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from contextlib import contextmanager

from madness import names
from steps import _processes as processes

POLL_SECONDS = 1.0
# Once a step is stopping, each store call is tried once, briefly: ending its runs takes a few
# seconds, and a store that does not answer cannot keep a stopped step alive for long (the next
# sweep or report ends a run left RUNNING once its process is gone).
SINGLE_ATTEMPT = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "5"}

stop = threading.Event()  # set once the step is asked to stop; stop_reason() says why
_reasons: list[str] = []


class Interrupted(KeyboardInterrupt):
    """The step was asked to stop: its runs end KILLED."""


def request_stop(reason: str) -> None:
    """Ask the step to stop; the first reason given is the one said."""
    if not _reasons:
        _reasons.append(reason)
    stop.set()


def stop_reason() -> str:
    """Return why the step was asked to stop ("interrupted" for Python's own KeyboardInterrupt)."""
    return _reasons[0] if _reasons else "interrupted"


def check_stop() -> None:
    """Raise Interrupted if the step was asked to stop; from then on each store call tries once."""
    if stop.is_set():
        os.environ.update(SINGLE_ATTEMPT)
        raise Interrupted(stop_reason())


def wait(seconds: float) -> None:
    """Sleep up to `seconds`; raise Interrupted as soon as the step is asked to stop."""
    stop.wait(seconds)
    check_stop()


@contextmanager
def environment(values: dict[str, str]):
    """Set these environment variables while the block runs; then put back what they were."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def single_attempt():
    """Store calls in this block try once, briefly: used to tidy up after the store has failed."""
    return environment(SINGLE_ATTEMPT)


def _on_signal(signum, frame) -> None:
    """Ask the step to stop; a second SIGINT exits at once, without ending the runs."""
    name = signal.Signals(signum).name
    if stop.is_set() and signum == signal.SIGINT:
        print(f"error: {name} again: exiting without ending its runs", file=sys.stderr, flush=True)
        os._exit(130)
    request_stop(f"interrupted (signal {name})")


def handle_signals() -> None:
    """Let SIGTERM, SIGINT and SIGHUP ask the step to stop. A SIGINT or SIGHUP ignored at start
    (a background job, nohup) stays ignored: the user asked for that."""
    signal.signal(signal.SIGTERM, _on_signal)
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, _on_signal)
    if signal.getsignal(signal.SIGHUP) is not signal.SIG_IGN:
        signal.signal(signal.SIGHUP, _on_signal)


def watched_tokens() -> list[str]:
    """Return the tokens of the processes whose end stops this one: those a launching step named (MADNESS_WATCH), and
    this process's own launcher chain (steps._processes.launcher_chain)."""
    inherited = [token for token in os.environ.get(names.ENV_WATCH, "").split(",") if token]
    own = [processes.process_token(pid) for pid in processes.launcher_chain()]
    return list(dict.fromkeys([*inherited, *own]))


@contextmanager
def launcher_watch(tokens: list[str], poll: float = POLL_SECONDS):
    """While the block runs, ask the step to stop once a watched process ends, and once it is asked
    to stop, ask the entry points MLflow runs for it to stop (as MLflow's SubmittedRun.cancel does).
    Children launched meanwhile inherit the watch list with this process added. A block that fails
    once its launcher has ended, or once it is asked to stop, raises Interrupted: it was stopped (a
    child watching the same launcher may have stopped first, failing the block before this watch saw it)."""
    done = threading.Event()

    def watch() -> None:
        while not stop.wait(poll):
            if done.is_set():
                return
            _stop_if_gone(tokens)
        if not done.is_set():
            processes.stop_mlflow_children()

    with environment({names.ENV_WATCH: ",".join([*tokens, processes.process_token()])}):
        threading.Thread(target=watch, name="launcher-watch", daemon=True).start()
        try:
            yield
        except Exception as err:
            _stop_if_gone(tokens)
            if stop.is_set():
                raise Interrupted(stop_reason()) from err
            raise
        finally:
            done.set()


def _stop_if_gone(tokens: list[str]) -> None:
    token = processes.gone(tokens)
    if token is not None:
        request_stop(f"stopped: the process that launched it (pid {token.partition(':')[0]}) ended")
