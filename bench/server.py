"""Store overhead: the same packaged sweep against a team server (PostgreSQL + `mlflow server`
proxying artifacts, both on loopback) and against a local SQLite file, side by side in one run.

Both sides run `python -m steps.main` on the same project snapshot with the same grid, jobs=1 and
force=true (every pair trains), each in a fresh store; the rounds alternate (SQLite, server,
SQLite, server, ...) so a drift in the machine's load hits both. Per-run time is each train run's lifetime in
its store (created by `mlflow.run` until its step ended it); the sweep's wall time adds the ingest
run, the launches and the report.

    .venv/bin/python bench/server.py                  # 3 x 3 grid, 1 epoch (store overhead dominates), 2 rounds
    .venv/bin/python bench/server.py --epochs 100     # the article's epochs: the overhead against real training
    .venv/bin/python bench/server.py --quick          # one pair, one round: a smoke test
"""

from __future__ import annotations

import os
import shutil
import statistics
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path

import _machine

sys.path.insert(0, str(_machine.ROOT))
from tools.teamserver import TeamServer, free_port


def pair_seconds(uri: str, prefix: str) -> list[float]:
    """Each train run's lifetime in the store (created by mlflow.run until its step ended it), in seconds."""
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=uri)
    # Matched here, not in a filter: a prefix may hold a quote or LIKE's own wildcards.
    experiments = [e.experiment_id for e in client.search_experiments() if e.name.startswith(f"{prefix}_")]
    runs = client.search_runs(experiments, "tags.entry_point = 'train' and attributes.status = 'FINISHED'")
    return [(r.info.end_time - r.info.start_time) / 1000 for r in runs]


def sweep(project: Path, args, uri: str, prefix: str, log: Path) -> tuple[float, list[float]]:
    os.environ["MLFLOW_TRACKING_URI"] = uri
    wall = _machine.run_sweep(
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
            prefix,
            "--jobs",
            "1",
            "--force",
            "true",
        ],
        log=log,
        echo=False,
    )
    return wall, pair_seconds(uri, prefix)


@contextmanager
def _removed(folder: Path):
    try:
        yield
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def main() -> None:
    parser = _machine.sweep_parser(
        __doc__.splitlines()[0], "one pair (small, 0.1), 1 epoch, one round: a smoke test", epochs=1
    )
    parser.add_argument("--rounds", type=int, default=2, help="alternating SQLite/server rounds (default 2)")
    args = parser.parse_args()
    if args.quick:
        args.models, args.lrs, args.epochs, args.rounds, args.league = "small", "0.1", 1, 1, "W"
    args.data = _machine.resolve_data(args.data)
    pairs = len(args.models.split(",")) * len(args.lrs.split(","))

    _machine.header("store overhead: the packaged sweep against a team server vs a local SQLite file")
    print(
        f"grid {args.models} x {args.lrs} ({pairs} pairs), {args.epochs} epochs, jobs=1, {args.rounds} round(s) each",
        flush=True,
    )
    sqlite, server = {"wall": [], "pairs": []}, {"wall": [], "pairs": []}
    with tempfile.TemporaryDirectory(prefix="bench-server-") as tmp, _machine.temp_store("bench-sqlite-") as store:
        project, commit = _machine.snapshot(Path(tmp) / "project")
        folder = Path(tempfile.mkdtemp(prefix="bench-team-server-"))
        folder.chmod(0o755)  # PostgreSQL's user must reach its data folder
        with TeamServer(folder, port=free_port(), workers=2) as team, _removed(folder):
            print(f"project snapshot at commit {commit}; server {team.tracking_uri} on PostgreSQL\n", flush=True)
            sqlite_uri = os.environ["MLFLOW_TRACKING_URI"]
            for round_ in range(1, args.rounds + 1):
                for name, uri, into in (("SQLite", sqlite_uri, sqlite), ("server", team.tracking_uri, server)):
                    wall, per_pair = sweep(project, args, uri, f"bench_{name.lower()}_{round_}", store / "sweeps.log")
                    into["wall"].append(wall)
                    into["pairs"] += per_pair
                    print(
                        f"  round {round_}, {name}: sweep {wall:.1f} s, {len(per_pair)} pairs, "
                        f"mean {statistics.mean(per_pair):.1f} s per pair",
                        flush=True,
                    )
        os.environ["MLFLOW_TRACKING_URI"] = sqlite_uri

    print("\n| store | sweeps | pairs | mean sweep wall (s) | mean per pair (s) | median per pair (s) |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for name, seen in (("SQLite file", sqlite), ("team server (PostgreSQL, proxied artifacts)", server)):
        print(
            f"| {name} | {len(seen['wall'])} | {len(seen['pairs'])} | {statistics.mean(seen['wall']):.1f} | "
            f"{statistics.mean(seen['pairs']):.1f} | {statistics.median(seen['pairs']):.1f} |"
        )
    per_run = statistics.mean(server["pairs"]) - statistics.mean(sqlite["pairs"])
    print(
        f"\nratio server / SQLite per pair: {statistics.mean(server['pairs']) / statistics.mean(sqlite['pairs']):.2f}x; "
        f"per sweep: {statistics.mean(server['wall']) / statistics.mean(sqlite['wall']):.2f}x; "
        f"overhead per run against the server: {per_run:+.1f} s"
    )


if __name__ == "__main__":
    main()
