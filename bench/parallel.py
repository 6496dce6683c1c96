"""Parallel sweep: the same grid with jobs=2 against jobs=1, each on a fresh store, with force.

`steps.main` gives each of `jobs` concurrent trainings its share of the cores (threads = cores //
jobs), so on this 2-core machine jobs=2 runs two single-threaded trainings where jobs=1 runs one
two-threaded training. Prints both wall times and the speed-up. Every result is bit-identical
either way (TensorFlow's op determinism); only the time differs.

    .venv/bin/python bench/parallel.py            # 3 x 3 grid, 20 epochs
    .venv/bin/python bench/parallel.py --epochs 100   # the article's epochs (about twice as long)
    .venv/bin/python bench/parallel.py --quick    # small x (0.01, 0.1), 1 epoch, synthetic women only: a smoke test
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import _machine


def main() -> None:
    parser = _machine.sweep_parser(
        __doc__.splitlines()[0], "small x (0.01, 0.1), 1 epoch, synthetic women only (smoke test)", epochs=20
    )
    parser.add_argument("--jobs", type=int, default=2, help="the parallel side's jobs (against jobs=1)")
    args = parser.parse_args()
    if args.quick:
        args.models, args.lrs, args.epochs, args.league = "small", "0.01,0.1", 1, "W"
    args.data = _machine.resolve_data(args.data)
    pairs = len(args.models.split(",")) * len(args.lrs.split(","))

    _machine.header(f"parallel sweep: jobs={args.jobs} vs jobs=1")
    times = {}
    with tempfile.TemporaryDirectory(prefix="bench-parallel-") as tmp:
        project, commit = _machine.snapshot(Path(tmp) / "project")
        print(
            f"project snapshot at commit {commit}; grid {args.models} x {args.lrs} ({pairs} pairs), "
            f"{args.epochs} epochs, data {args.data}\n",
            flush=True,
        )
        for jobs in (1, args.jobs):
            print(f"jobs={jobs} (fresh store, force)", flush=True)
            with _machine.temp_store(f"bench-parallel-{jobs}-") as store:
                times[jobs] = _machine.run_sweep(
                    project,
                    [
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
                        f"bench_parallel_jobs{jobs}",
                        "--jobs",
                        str(jobs),
                        "--env_manager",
                        "local",
                        "--force",
                        "true",
                    ],
                    log=store / "sweep.log",
                )
                finished = sum(": FINISHED in " in line for line in (store / "sweep.log").read_text().splitlines())
            print(f"  wall {times[jobs]:.1f} s ({finished} pairs FINISHED)\n", flush=True)

    print("| jobs | wall time (s) | per pair (s) |")
    print("| ---: | ---: | ---: |")
    for jobs, secs in times.items():
        print(f"| {jobs} | {secs:.1f} | {secs / pairs:.1f} |")
    print(f"\nspeed-up jobs={args.jobs} over jobs=1: {times[1] / times[args.jobs]:.2f}x")


if __name__ == "__main__":
    main()
