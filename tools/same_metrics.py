"""Do two commits train the same? Runs `python -m steps.train` from a checkout of each commit with the
same params, each into a store of its own, and compares every metric the runs logged, bit for bit.

    .venv/bin/python tools/same_metrics.py <commit-a> <commit-b> [--data ../shared/data/mmlm2024 --league W]

Prints one line per configuration (identical, or the metrics that differ) and exits 1 on any
difference. A refactoring that must leave behaviour alone is checked with it.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from madness import git  # noqa: E402
from tools import sandbox  # noqa: E402

MODELS = ("small", "medium", "large")


def train_metrics(checkout: Path, store: Path, args: list[str]) -> dict[str, float]:
    import mlflow

    uri = sandbox.new_sqlite_store(store)
    env = {k: v for k, v in os.environ.items() if k not in sandbox.RUN_CONTEXT}
    env.update(
        MLFLOW_TRACKING_URI=uri, PYTHONPATH=str(checkout), PATH=f"{Path(sys.executable).parent}:{env.get('PATH', '')}"
    )
    done = subprocess.run(
        [sys.executable, "-m", "steps.train", *args], cwd=store, env=env, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        sys.exit(f"error: train failed at {checkout.name} with {' '.join(args)}:\n{done.stderr[-2000:]}")
    client = mlflow.MlflowClient(tracking_uri=uri)
    (run,) = client.search_runs([e.experiment_id for e in client.search_experiments()])
    return run.data.metrics


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("commits", nargs=2)
    parser.add_argument("--data", default="synthetic")
    parser.add_argument("--league", default="W")
    parser.add_argument("--lr", default="0.01")
    parser.add_argument("--epochs", default="100")
    options = parser.parse_args(argv)
    differ = 0
    with tempfile.TemporaryDirectory(prefix="same-metrics-") as tmp:
        checkouts = []
        for commit in options.commits:
            folder = Path(tmp) / f"{len(checkouts)}-{commit}"
            git.output(["worktree", "add", "--detach", "--quiet", str(folder), commit], ROOT)
            checkouts.append(folder)
        data = options.data if options.data == "synthetic" else str(Path(options.data).resolve())
        try:
            for model in MODELS:
                args = [
                    "--model",
                    model,
                    "--lr",
                    options.lr,
                    "--epochs",
                    options.epochs,
                    "--data",
                    data,
                    "--league",
                    options.league,
                ]
                found = [train_metrics(c, Path(tmp) / f"store-{i}-{model}", args) for i, c in enumerate(checkouts)]
                diff = {
                    k: (found[0].get(k), found[1].get(k))
                    for k in found[0].keys() | found[1].keys()
                    if found[0].get(k) != found[1].get(k)
                }
                shown = f"{model} lr={options.lr} data={options.data} league={options.league}"
                if diff:
                    differ += 1
                    print(f"{shown}: DIFFERENT {diff}")
                else:
                    brier = found[0].get("brier")
                    print(f"{shown}: identical, {len(found[0])} metrics (brier {brier!r})")
        finally:
            for folder in checkouts:
                git.output(["worktree", "remove", "--force", str(folder)], ROOT)
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
