"""A step's process and its launcher (steps._lifecycle), with real processes and real signals."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from madness import names
from steps import _lifecycle as lifecycle
from steps import _processes as processes
from steps._entry import PROJECT_ROOT

pytestmark = pytest.mark.timed  # bounds in seconds on real signals: make test runs these alone

STEP = textwrap.dedent("""
    import sys, time
    from steps import _lifecycle as lifecycle
    lifecycle.handle_signals()
    try:
        with lifecycle.LauncherWatch(sys.argv[1:], poll=0.2):
            print("ready", flush=True)  # only now: a signal arriving earlier would find no handler
            time.sleep(60)
    except lifecycle.Interrupted as err:
        print(lifecycle.stop_reason(err), flush=True)
        sys.exit(3)
""")


def start_step(*tokens, **popen) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-c", STEP, *tokens], cwd=PROJECT_ROOT, stdout=subprocess.PIPE, text=True, **popen
    )
    assert proc.stdout.readline().strip() == "ready"
    return proc


@pytest.fixture
def launcher():
    proc = subprocess.Popen(["sleep", "120"])
    yield proc
    proc.kill()
    proc.wait()


def test_a_step_stops_within_seconds_once_its_launcher_ends(launcher):
    step = start_step(processes.process_token(launcher.pid))
    launcher.kill()
    launcher.wait()
    started = time.monotonic()
    out, _ = step.communicate(timeout=10)
    assert step.returncode == 3 and time.monotonic() - started < 5
    assert out.strip() == f"stopped: the process that launched it (pid {launcher.pid}) ended"


def test_a_step_whose_launchers_live_runs_on(launcher):
    step = start_step(processes.process_token(launcher.pid))
    time.sleep(1)
    assert step.poll() is None
    step.terminate()
    out, _ = step.communicate(timeout=10)
    assert step.returncode == 3 and out.strip() == "interrupted (signal SIGTERM)"


def test_sighup_ends_a_step_as_sigterm_does():
    step = start_step()
    step.send_signal(signal.SIGHUP)
    out, _ = step.communicate(timeout=10)
    assert step.returncode == 3 and out.strip() == "interrupted (signal SIGHUP)"


def test_a_step_started_under_nohup_ignores_sighup():
    step = start_step(preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_IGN))
    step.send_signal(signal.SIGHUP)
    time.sleep(0.5)
    assert step.poll() is None
    step.terminate()
    step.communicate(timeout=10)


# A step whose clean-up takes argv[1] seconds, cut off after argv[2]; it watches the tokens after
# those, clean-up included (a sweep cancels its children inside its watch).
SLOW_CLEANUP_STEP = textwrap.dedent("""
    import sys, time
    from steps import _lifecycle as lifecycle
    lifecycle.CLEANUP_SECONDS = float(sys.argv[2])
    lifecycle.handle_signals()
    with lifecycle.LauncherWatch(sys.argv[3:], poll=0.2):
        try:
            print("ready", flush=True)
            time.sleep(60)
        except lifecycle.Interrupted as err:
            print("cleaning", flush=True)
            time.sleep(float(sys.argv[1]))
            print("cleaned", flush=True)
            sys.exit(3)
""")


def start_slow_cleanup(cleanup: float, limit: float = 30, *watched: str) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-c", SLOW_CLEANUP_STEP, str(cleanup), str(limit), *watched],
        cwd=PROJECT_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout.readline().strip() == "ready"
    return proc


def stop_and_wait_for_cleanup(step: subprocess.Popen, sig=signal.SIGTERM) -> None:
    step.send_signal(sig)
    assert step.stdout.readline().strip() == "cleaning"


@pytest.mark.parametrize("second", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_a_second_signal_does_not_break_the_clean_up_of_the_first(second):
    step = start_slow_cleanup(1.5)
    stop_and_wait_for_cleanup(step)
    step.send_signal(second)  # as a stopped sweep's child gets: its own watch's and the sweep's cancel
    out, err = step.communicate(timeout=10)
    assert (step.returncode, out.strip(), err) == (3, "cleaned", "")


def test_a_second_ctrl_c_exits_at_once_without_the_clean_up():
    step = start_slow_cleanup(30)
    stop_and_wait_for_cleanup(step, signal.SIGINT)
    started = time.monotonic()
    step.send_signal(signal.SIGINT)
    out, err = step.communicate(timeout=10)
    assert time.monotonic() - started < 5
    assert (step.returncode, out, err.strip()) == (130, "", "error: SIGINT again: exiting without ending its runs")


def test_a_clean_up_that_hangs_is_cut_off_after_its_limit():
    step = start_slow_cleanup(60, limit=1)
    started = time.monotonic()
    stop_and_wait_for_cleanup(step)
    out, err = step.communicate(timeout=20)
    assert time.monotonic() - started < 10
    assert (step.returncode, out, err.strip()) == (
        130,
        "",
        "error: still ending its runs 1 s after SIGTERM; exiting without them",
    )


# A signal that arrives inside a store call: the "store" is code in a module named as one of MLflow's
# stores; it signals its own process, then goes on to its end. argv[1]: the module name.
SIGNAL_IN_STORE_CALL = textwrap.dedent("""
    import os, signal, sys
    from steps import _lifecycle as lifecycle
    store = {"__name__": sys.argv[1], "os": os, "signal": signal}
    exec(
        "def call(done):\\n"
        "    os.kill(os.getpid(), signal.SIGTERM)\\n"
        "    for _ in range(100000):\\n"  # bytecodes enough for the handler to run in here
        "        pass\\n"
        "    done.append('finished')\\n",
        store,
    )
    lifecycle.handle_signals()
    done = []
    try:
        store["call"](done)
        print("not interrupted", flush=True)
    except lifecycle.Interrupted:
        print("interrupted after:", *done, flush=True)
""")


@pytest.mark.parametrize(
    ("module", "said"),
    [
        ("mlflow.store.tracking.sqlalchemy_store", "interrupted after: finished"),
        ("mlflow.store.db.utils", "interrupted after: finished"),
        ("sqlalchemy.engine.base", "interrupted after: finished"),
        ("mlflow.store.tracking.rest_store", "interrupted after:"),  # no lock; may retry for a minute
        ("steps.example", "interrupted after:"),
    ],
    ids=["sql-store", "store-db", "sqlalchemy", "rest-store", "elsewhere"],
)
def test_a_signal_inside_a_sql_store_call_is_raised_as_the_call_returns(module, said):
    out = subprocess.run(
        [sys.executable, "-c", SIGNAL_IN_STORE_CALL, module],
        check=False,
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert (out.returncode, out.stdout.strip(), out.stderr) == (0, said, "")


# A step that queries a real SQLite store in a loop until a signal ends it, then ends its run.
QUERYING_STEP = textwrap.dedent("""
    import mlflow
    from steps._entry import entry_point, run_as_script, start_run

    @entry_point
    def main(argv=None):
        with start_run("probe", {}) as run:
            client = mlflow.MlflowClient()
            print("ready", flush=True)
            while True:
                client.get_run(run.info.run_id)
                client.search_runs([run.info.experiment_id], "attributes.status = 'RUNNING'")

    run_as_script(main)
""")


@pytest.mark.slow
def test_a_step_stopped_amid_store_calls_ends_its_run_killed_at_once(tmp_path):
    """Before signals waited for the store call to return, 1 in 6 of these left the run RUNNING
    after 20 s: the clean-up waited on the SQLite lock of the call the signal had cut."""
    import mlflow

    for attempt in range(8):
        uri = f"sqlite:///{tmp_path}/store{attempt}.db"
        step = subprocess.Popen(
            [sys.executable, "-c", QUERYING_STEP],
            cwd=PROJECT_ROOT,
            env={**os.environ, "MLFLOW_TRACKING_URI": uri},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert step.stdout.readline().strip() == "ready"
        time.sleep(0.3 + 0.1 * attempt)  # the signal lands at another point of the loop each time
        started = time.monotonic()
        step.send_signal(signal.SIGTERM)
        out, err = step.communicate(timeout=60)
        took = time.monotonic() - started
        statuses = [r.info.status for r in mlflow.MlflowClient(uri).search_runs(["0"])]
        assert (step.returncode, statuses, err.strip().splitlines()[-1]) == (
            130,
            ["KILLED"],
            "error: interrupted (signal SIGTERM)",
        ), f"attempt {attempt}"
        assert took < 5, f"attempt {attempt}: {took:.1f} s"


def test_the_watch_does_not_signal_a_step_already_stopping(launcher):
    step = start_slow_cleanup(3, 30, processes.process_token(launcher.pid))
    stop_and_wait_for_cleanup(step)
    launcher.kill()  # during the clean-up: the watch, polling every 0.2 s, must stay quiet
    out, err = step.communicate(timeout=10)
    assert (step.returncode, out.strip(), err) == (3, "cleaned", "")


def test_children_launched_inside_the_watch_inherit_it_with_this_process_added(monkeypatch):
    monkeypatch.delenv(names.ENV_WATCH, raising=False)
    with lifecycle.LauncherWatch(["1:2"]):
        inherited = subprocess.run(
            [sys.executable, "-c", f"import os; print(os.environ['{names.ENV_WATCH}'])"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    assert inherited == f"1:2,{processes.process_token()}"
    assert names.ENV_WATCH not in os.environ
