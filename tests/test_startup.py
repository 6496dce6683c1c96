"""What a step's process loads before it needs it: a sweep that trains nothing, and the report, never
import TensorFlow, Keras or matplotlib (seconds of start-up each). Checked in a real interpreter."""

from __future__ import annotations

import json
import sys

from conftest import run_cli

HEAVY = ("tensorflow", "keras", "matplotlib")


LIGHT = ("steps.main", "steps.report", "madness.plots", "madness.report")


def test_importing_a_step_loads_no_tensorflow_keras_or_matplotlib():
    # One interpreter imports them in turn: what each import added is told apart (an interpreter start
    # each would cost seconds of make check).
    code = (
        "import importlib, json, sys\n"
        "loaded = {}\n"
        f"for module in {LIGHT!r}:\n"
        "    importlib.import_module(module)\n"
        f"    loaded[module] = sorted(m for m in {HEAVY!r} if m in sys.modules)\n"
        "print(json.dumps(loaded))\n"
    )
    result = run_cli([sys.executable, "-c", code])
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == {module: [] for module in LIGHT}


def test_drawing_a_figure_imports_matplotlib_then():
    code = (
        "import sys; from madness import plots; before = 'matplotlib' in sys.modules; "
        "plots.new_figure(); print(before, 'matplotlib' in sys.modules)"
    )
    result = run_cli([sys.executable, "-c", code])
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "True"]


# --- the end of a step's process: run_as_script leaves without the interpreter's teardown ---
# (the exit handlers registered while the step runs still run)


def run_script(body: str):
    """A step-like main run through steps._entry.run_as_script in a real interpreter, its output piped."""
    code = (
        "import atexit, sys\n"
        "from steps._entry import run_as_script\n"
        "def main():\n"
        "    atexit.register(lambda: print('atexit handler ran', flush=True))  # as MLflow's, as it logs\n"
        f"    {body}\n"
        "run_as_script(main)\n"
        "print('not reached')\n"
    )
    return run_cli([sys.executable, "-c", code])


def test_a_finished_step_exits_0_with_its_output_flushed_and_atexit_run():
    result = run_script("print('step output')  # buffered: stdout is a pipe")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["step output", "atexit handler ran"]


def test_a_step_that_exits_with_a_code_keeps_it():
    result = run_script("print('error: a one-line reason', file=sys.stderr); sys.exit(3)")
    assert result.returncode == 3 and result.stderr.strip() == "error: a one-line reason"


def test_a_step_that_exits_with_a_message_prints_it_and_exits_1():
    result = run_script("sys.exit('error: stopped')")
    assert result.returncode == 1 and result.stderr.strip() == "error: stopped"


def test_a_steps_bug_keeps_its_traceback():
    result = run_script("raise RuntimeError('a bug')")
    assert result.returncode == 1 and "Traceback" in result.stderr and "RuntimeError: a bug" in result.stderr
    assert "not reached" not in result.stdout
