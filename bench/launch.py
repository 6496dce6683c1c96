"""Launch cost: how long a pair waits between MLflow creating its run and its train step starting.

A forced sweep of one model over three learning rates (1 epoch, synthetic league) runs in a snapshot
of the project and a fresh store. For each train run, the gap is its step process' start time (the
`process.token` tag: pid and psutil's create time) minus the run's start time (set when
`mlflow.projects.run` creates it). Called synchronously, as the sweep does, MLflow starts the entry
point's command at once; called asynchronously it starts an `mlflow run --run-id` process that
starts the command, and the gap holds that process' start-up.
psutil's create times count from the boot second, so the gap carries a constant offset under 1 s
on a machine: compare gaps measured on the same machine. Tokens written before the steps read
processes through psutil (main at 88fd7f4 and earlier) hold /proc clock ticks since boot instead,
converted here the way psutil does, so that the two launch paths compare on one scale.

    .venv/bin/python bench/launch.py
"""

from __future__ import annotations

import statistics
import tempfile
from pathlib import Path

import _machine

SWEEP = ["--models", "small", "--lrs", "0.1,0.01,0.001", "--epochs", "1", "--force", "true", "--prefix", "launch"]


def started_at(token_start: str) -> float:
    """Return a process token's start as seconds since the epoch: psutil's create time, or clock ticks since boot."""
    import os

    import psutil

    started = float(token_start)
    return started if started > 1e9 else psutil.boot_time() + started / os.sysconf("SC_CLK_TCK")


def launch_gaps() -> list[float]:
    """Seconds from each train run's creation to its step process' start, in the current store."""
    import mlflow

    from madness import names

    client = mlflow.MlflowClient()
    experiments = [e.experiment_id for e in client.search_experiments()]
    gaps = []
    for run in client.search_runs(experiments, f"tags.`{names.TAG_PROJECT_ENTRY_POINT}` = 'train'"):
        started = run.data.tags.get(names.TAG_PROCESS, "").partition(":")[2]
        if started:
            gaps.append(started_at(started) - run.info.start_time / 1000)
    return gaps


def main() -> None:
    _machine.header("launch cost: run created -> train step started")
    with tempfile.TemporaryDirectory(prefix="bench-launch-") as tmp, _machine.temp_store("bench-launch-store-"):
        project, commit = _machine.snapshot(Path(tmp) / "project")
        print(f"project snapshot at commit {commit}", flush=True)
        wall = _machine.run_sweep(project, SWEEP)
        gaps = launch_gaps()
    print(f"\nsweep wall {wall:.1f} s; {len(gaps)} train runs; gap median {statistics.median(gaps):.2f} s", flush=True)
    print(f"gaps: {', '.join(f'{gap:.2f}' for gap in sorted(gaps))} s", flush=True)


if __name__ == "__main__":
    main()
