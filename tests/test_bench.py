"""The benchmarks run: bench/training_speed.py and bench/cache.py in --quick mode, as a person would."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from tests.conftest import ROOT, subprocess_env

RATIO = re.compile(r"\d+(\.\d+)?x")


def run_bench(script: str) -> str:
    # The scripts make their own temporary tracking store; MLFLOW_TRACKING_URI from the session is overridden.
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / script), "--quick"],
        cwd=ROOT,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return proc.stdout


@pytest.mark.slow
def test_training_speed_and_cache_benchmarks_run_and_print_ratios():
    speed = run_bench("training_speed.py")
    assert "nproc:" in speed and "tensorflow:" in speed
    assert "speed-up ratio" in speed and RATIO.search(speed)
    assert "identical in every model: yes" in speed  # fast=True makes the same updates as plain fit

    cache = run_bench("cache.py")
    assert "ratio first / second:" in cache and RATIO.search(cache)
    assert "| second (same command) |" in cache and re.search(r"\| second \(same command\) \| [\d.]+ \| 0 \|", cache)
