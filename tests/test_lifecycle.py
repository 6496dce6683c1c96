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
    import sys
    from steps import _lifecycle as lifecycle
    lifecycle.handle_signals()
    try:
        with lifecycle.launcher_watch(sys.argv[1:], poll=0.2):
            print("ready", flush=True)  # only now: a signal arriving earlier would find no handler
            lifecycle.wait(60)
    except lifecycle.Interrupted as err:
        print(err, flush=True)
        sys.exit(3)
""")


def start_step(*tokens, under: tuple[str, ...] = ()) -> subprocess.Popen:
    """Start STEP watching `tokens`, through the command `under` (e.g. nohup), once it is ready."""
    proc = subprocess.Popen(
        [*under, sys.executable, "-c", STEP, *tokens], cwd=PROJECT_ROOT, stdout=subprocess.PIPE, text=True
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
    step = start_step(under=("nohup",))  # a preexec_fn is not safe in a process with threads, as a test worker is
    step.send_signal(signal.SIGHUP)
    time.sleep(0.5)
    assert step.poll() is None
    step.terminate()
    step.communicate(timeout=10)


# A step whose clean-up takes argv[1] seconds; it watches the tokens after that, clean-up included
# (a sweep cancels its children inside its watch).
SLOW_CLEANUP_STEP = textwrap.dedent("""
    import sys, time
    from steps import _lifecycle as lifecycle
    lifecycle.handle_signals()
    with lifecycle.launcher_watch(sys.argv[2:], poll=0.2):
        try:
            print("ready", flush=True)
            lifecycle.wait(60)
        except lifecycle.Interrupted:
            print("cleaning", flush=True)
            time.sleep(float(sys.argv[1]))
            print("cleaned", flush=True)
            sys.exit(3)
""")


def start_slow_cleanup(cleanup: float, *watched: str) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-c", SLOW_CLEANUP_STEP, str(cleanup), *watched],
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


# A step asked to stop inside a call that goes on for a while (a store call): the call runs to its
# end, and the step stops at its next check, its store calls then tried once, briefly.
SIGNAL_IN_A_CALL = textwrap.dedent("""
    import os, signal, time
    from steps import _lifecycle as lifecycle
    lifecycle.handle_signals()
    done = []
    def call():
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.5)
        done.append("finished")
    try:
        call()
        print(*done, flush=True)
        lifecycle.check_stop()
    except lifecycle.Interrupted as err:
        print(err, os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"], os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"], flush=True)
""")


def run_script(script: str) -> subprocess.CompletedProcess:
    """Run the Python script in the project folder and return what it printed and its exit code."""
    return subprocess.run(
        [sys.executable, "-c", script], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=30, check=False
    )


def test_a_signal_lets_the_call_in_flight_finish_and_the_step_stops_at_its_next_check():
    out = run_script(SIGNAL_IN_A_CALL)
    assert (out.returncode, out.stdout.splitlines(), out.stderr) == (
        0,
        ["finished", "interrupted (signal SIGTERM) 0 5"],
        "",
    )


# A step that queries a real SQLite store in a loop until a signal ends it, then ends its run.
QUERYING_STEP = textwrap.dedent("""
    import mlflow
    from steps import _lifecycle
    from steps._entry import entry_point, run_as_script, start_run

    @entry_point
    def main(argv=None):
        with start_run("probe", {}) as run:
            client = mlflow.MlflowClient()
            print("ready", flush=True)
            while True:
                client.get_run(run.info.run_id)
                client.search_runs([run.info.experiment_id], "attributes.status = 'RUNNING'")
                _lifecycle.check_stop()

    run_as_script(main)
""")


@pytest.mark.slow
def test_a_step_stopped_amid_store_calls_ends_its_run_killed_at_once(tmp_path):
    """The store call a signal lands in runs to its end before the clean-up writes to the same
    SQLite database (a call cut short would hold its lock, and leave the run RUNNING)."""
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


def test_the_watch_does_not_restop_a_step_already_stopping(launcher):
    step = start_slow_cleanup(3, processes.process_token(launcher.pid))
    stop_and_wait_for_cleanup(step)
    launcher.kill()  # during the clean-up: the watch, polling every 0.2 s, must stay quiet
    out, err = step.communicate(timeout=10)
    assert (step.returncode, out.strip(), err) == (3, "cleaned", "")


def test_children_launched_inside_the_watch_inherit_it_with_this_process_added(monkeypatch):
    monkeypatch.delenv(names.ENV_WATCH, raising=False)
    with lifecycle.launcher_watch(["1:2"]):
        inherited = subprocess.run(
            [sys.executable, "-c", f"import os; print(os.environ['{names.ENV_WATCH}'])"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    assert inherited == f"1:2,{processes.process_token()}"
    assert names.ENV_WATCH not in os.environ


# A step running an entry point through MLflow (a child process with MLFLOW_RUN_ID set), as the
# sweep, its ingest and reproduce do: MLflow's synchronous wait does not check the stop.
STEP_WITH_AN_MLFLOW_CHILD = textwrap.dedent("""
    import os, subprocess, sys
    from steps import _lifecycle as lifecycle
    lifecycle.handle_signals()
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], env={**os.environ, "MLFLOW_RUN_ID": "r"})
    with lifecycle.launcher_watch([], poll=0.2):
        print("ready", flush=True)
        print(child.wait(timeout=30), flush=True)
""")


def test_a_step_asked_to_stop_asks_the_entry_points_mlflow_runs_for_it_to_stop():
    step = subprocess.Popen(
        [sys.executable, "-c", STEP_WITH_AN_MLFLOW_CHILD], cwd=PROJECT_ROOT, stdout=subprocess.PIPE, text=True
    )
    assert step.stdout.readline().strip() == "ready"
    started = time.monotonic()
    step.send_signal(signal.SIGTERM)
    out, _ = step.communicate(timeout=20)
    assert (step.returncode, out.strip()) == (0, str(-signal.SIGTERM))
    assert time.monotonic() - started < 5


# A step whose launcher has ended, failing before its watch polled: a sweep whose pair, watching
# the same launcher, stopped first and failed the sweep's grid.
STEP_FAILING_AFTER_ITS_LAUNCHER = textwrap.dedent("""
    import subprocess, sys
    from steps import _lifecycle as lifecycle, _processes as processes
    launcher = subprocess.Popen([sys.executable, "-c", "pass"])
    token = processes.process_token(launcher.pid)
    launcher.wait()
    try:
        with lifecycle.launcher_watch([token], poll=600):
            raise ValueError("1 of 1 pairs failed")
    except lifecycle.Interrupted as stopped:
        print(f"{stopped} | {stopped.__cause__!r}")
""")


def test_a_step_failing_once_its_launcher_ended_is_stopped():
    out = run_script(STEP_FAILING_AFTER_ITS_LAUNCHER)
    assert out.stdout.startswith("stopped: the process that launched it (pid "), out.stderr
    assert out.stdout.strip().endswith(" ended | ValueError('1 of 1 pairs failed')")


def test_a_step_failing_while_its_launcher_lives_keeps_its_error():
    with pytest.raises(ValueError, match="a bug"), lifecycle.launcher_watch([processes.process_token()], poll=600):
        raise ValueError("a bug")
