"""What a step's process loads before it needs it: a sweep that trains nothing, and the report, never
import TensorFlow, Keras or matplotlib (seconds of start-up each). Checked in a real interpreter."""

from __future__ import annotations

import json
import sys

import pytest

from conftest import run_cli

HEAVY = ("tensorflow", "keras", "matplotlib")


@pytest.mark.parametrize("module", ["steps.main", "steps.report", "madness.plots", "madness.report"])
def test_importing_a_step_loads_no_tensorflow_keras_or_matplotlib(module):
    code = f"import sys, json, {module}; print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))"
    result = run_cli([sys.executable, "-c", code])
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []


def test_drawing_a_figure_imports_matplotlib_then():
    code = (
        "import sys; from madness import plots; before = 'matplotlib' in sys.modules; "
        "plots.new_figure(); print(before, 'matplotlib' in sys.modules)"
    )
    result = run_cli([sys.executable, "-c", code])
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "True"]
