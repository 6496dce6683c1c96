"""The benchmarks run: bench/training_speed.py, cache.py, packaging.py and seeds.py in --quick mode, as a person would."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from conftest import ROOT, subprocess_env

RATIO = re.compile(r"\d+(\.\d+)?x")


def run_bench(script: str, timeout: int = 600) -> str:
    # The scripts make their own temporary tracking store; MLFLOW_TRACKING_URI from the session is overridden.
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / script), "--quick"],
        cwd=ROOT,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return proc.stdout


@pytest.mark.slow
def test_training_speed_and_cache_benchmarks_run_and_print_ratios():
    speed = run_bench("training_speed.py")
    assert "nproc:" in speed and "tensorflow:" in speed
    assert "speed-up ratio" in speed and RATIO.search(speed)
    # the fast path keeps plain fit's best epoch, and a rerun of it (cold, then warm) gives the same bits
    assert "same best epoch and bit-identical reruns in every network: yes" in speed

    cache = run_bench("cache.py")
    assert "ratio first / second:" in cache and RATIO.search(cache)
    assert "| second (same command) |" in cache and re.search(r"\| second \(same command\) \| [\d.]+ \| 0 \|", cache)
    assert re.search(r"second invocation above the store's floor: -?[\d.]+ s", cache)


@pytest.mark.slow
def test_packaging_benchmark_runs_every_side_and_prints_the_overheads():
    # Five sides in one run (floor, notebook loop, two sweeps with an ingest each): slower than the others.
    out = run_bench("packaging.py", timeout=1200)
    assert "nproc:" in out and "mlflow:" in out
    assert re.search(r"\n  [\d.]+, [\d.]+, [\d.]+ s; median [\d.]+ s\n", out)  # three bare interpreters timed
    assert "notebook small_0.1: brier " in out  # the article's loop ran in its own process
    for side in ("the article's notebook loop", "packaged sweep, jobs=1", "packaged sweep, jobs=2"):
        assert re.search(rf"\| {re.escape(side)}[^|]* \| [\d.]+ \| [\d.]+ \| [\d.]+ \| [\d.]+x \|", out), side
    # Each train run's own split was read from the sweep's output and the store.
    assert re.search(r"\| packaged jobs=1 \| train runs: training \| [\d.]+ \| [\d.]+ \|", out)
    assert re.search(r"packaged jobs=1: \([\d.]+ - ingest [\d.]+ - training [\d.]+\) / 1 = -?[\d.]+", out)
    assert re.search(r"packaged overhead - floor: a\) -?[\d.]+, b\) -?[\d.]+ per run", out)
    assert re.search(r"\| small_0\.1 \| [\d.]+ \| [\d.]+ \| [\d.]+ \|", out)
    assert "packaged jobs=1 and jobs=2 identical Brier (all digits) in 1 of 1 pairs" in out
    assert re.search(r"ratio packaged jobs=1 / notebook loop: [\d.]+x; jobs=2 / notebook loop: [\d.]+x", out)


@pytest.mark.slow
def test_seeds_benchmark_runs_and_prints_its_three_figures():
    out = run_bench("seeds.py")
    assert "nproc:" in out and "4 trainings in " in out
    assert re.search(r"\| small_0\.001 \| [\d.]+ \| [\d.]+ \| [\d.]+ \| [\d.]+ \| [\d.]+ \| \d+, \d+ \|", out)
    assert re.search(r"\| small_0\.01 \| [\d.]+ \| [\d.]+ \| [\d.]+ \| [+-][\d.]+ \| [+-][\d.]+ \|", out)
    assert re.search(r"Kendall's tau between the two rankings: [+-][\d.]+", out)
    assert re.search(r"best when one seed decides, over the 2 seeds: small_0\.0\d+ \dx", out)
