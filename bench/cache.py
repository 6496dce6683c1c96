"""Sweep cache: run a small sweep on a fresh store, then invoke the very same command again.

The second invocation should find every pair (and the ingest run) FINISHED with the same git
commit, working-tree state, params and data digest, train nothing, and take seconds. Prints both
times, the ratio, and how many pairs each invocation trained; exits non-zero if the second trained any.
Then, against the same store, times the least any MLflow command pays there (a fresh interpreter that
imports MLflow and opens the store: `python -c "import mlflow; mlflow.MlflowClient().search_experiments()"`,
median of a few), and prints the second invocation's time above it: the sweep's own cost of finding
its pairs reusable, recording the invocation and writing the report.
The sweeps run in a clone of the committed HEAD (see _machine.snapshot), so edits being made to
the working tree meanwhile cannot change the cache key between the two invocations.

    .venv/bin/python bench/cache.py            # 3 x 3 grid, 10 epochs
    .venv/bin/python bench/cache.py --quick    # one pair (small, 0.1), 1 epoch, synthetic women only: a smoke test
"""

from __future__ import annotations

import re
import statistics
import sys
import tempfile
from pathlib import Path

import _machine

# What any process that reads this store through MLflow pays before its own work.
STORE_FLOOR_CODE = "import mlflow; mlflow.MlflowClient().search_experiments()"
STORE_FLOOR_RUNS = 5
SUMMARY = re.compile(r"sweep \w+: (\d+) pairs, (\d+) reused, (\d+) to train")


def counts(log: Path, start: int) -> tuple[int, int, int]:
    text = log.read_text()[start:]
    found = SUMMARY.findall(text)
    if not found:
        sys.exit("error: no sweep summary line in the output")
    return tuple(map(int, found[-1]))


def main() -> None:
    parser = _machine.sweep_parser(
        __doc__.splitlines()[0], "one pair (small, 0.1), 1 epoch, synthetic women only (smoke test)", epochs=10
    )
    args = parser.parse_args()
    if args.quick:
        args.models, args.lrs, args.epochs, args.league = "small", "0.1", 1, "W"
    args.data = _machine.resolve_data(args.data)

    _machine.header("sweep cache: the same sweep invoked twice")
    sweep = [
        "--models",
        args.models,
        "--lrs",
        args.lrs,
        "--epochs",
        str(args.epochs),
        "--data",
        args.data,
        "--league",
        args.league,
        "--prefix",
        "bench_cache",
        "--jobs",
        "1",
        "--env_manager",
        "local",
    ]
    with tempfile.TemporaryDirectory(prefix="bench-cache-") as tmp, _machine.temp_store("bench-cache-store-") as store:
        project, commit = _machine.snapshot(Path(tmp) / "project")
        print(
            f"project snapshot at commit {commit}; grid {args.models} x {args.lrs}, {args.epochs} epochs, data {args.data}\n",
            flush=True,
        )
        log = store / "sweep.log"
        log.touch()
        print("1) first invocation (fresh store)", flush=True)
        first = _machine.run_sweep(project, sweep, log=log)
        pairs, reused1, trained1 = counts(log, 0)
        size = len(log.read_text())
        print(f"  wall {first:.1f} s, trained {trained1} of {pairs}\n", flush=True)
        print("2) second invocation, same command and store", flush=True)
        second = _machine.run_sweep(project, sweep, log=log)
        _, reused2, trained2 = counts(log, size)
        ingest_reused = "ingest: reusing run" in log.read_text()[size:]
        print(
            f"  wall {second:.1f} s, trained {trained2} of {pairs}, ingest {'reused' if ingest_reused else 'RERUN'}\n",
            flush=True,
        )
        runs = 2 if args.quick else STORE_FLOOR_RUNS
        print(f"3) the store's floor: {runs} x python -c {STORE_FLOOR_CODE!r}", flush=True)
        floors = _machine.interpreter_floor(project, STORE_FLOOR_CODE, runs)
        floor = statistics.median(floors)
        print(f"  {', '.join(f'{s:.1f}' for s in floors)} s; median {floor:.1f} s\n", flush=True)

    print("| invocation | wall time (s) | pairs trained | pairs reused |")
    print("| --- | ---: | ---: | ---: |")
    print(f"| first (fresh store) | {first:.1f} | {trained1} | {reused1} |")
    print(f"| second (same command) | {second:.1f} | {trained2} | {reused2} |")
    print(f"| the store's floor (MLflow imported, store opened; median) | {floor:.1f} | - | - |")
    print(f"\nratio first / second: {first / second:.1f}x (second takes {second / first:.1%} of the first)")
    print(
        f"second invocation above the store's floor: {second - floor:.1f} s "
        "(finding every pair reusable, the invocation's own run, the report)"
    )
    if trained2 or not ingest_reused:
        sys.exit("error: the second invocation trained again: the cache missed")


if __name__ == "__main__":
    main()
