"""Packaging overhead: the 3 x 3 sweep as packaged `mlflow.run` executions (`python -m steps.main`,
env_manager local, jobs=1, fresh store, force) against the same nine trainings in one Python
process with plain MLflow tracking and no Projects.

The plain side builds the features once (madness.dataset), then for each pair opens a run, logs
its params, trains with madness.model.train (the same function, data, seed and settings as the
train step) and logs the loss curves, the Brier score and the other test scores. What only the
packaged side does: a separate process per run (interpreter, imports, TensorFlow start-up), an
ingest run whose features each train run downloads, the logged model, loss plot and datasets, and
the sweep's report. Both sides are timed as whole commands, each in its own fresh store.

    .venv/bin/python bench/packaging.py                     # synthetic league, 100 epochs
    # the article's 100 epochs, real women's data:
    .venv/bin/python bench/packaging.py --data ../shared/data/mmlm2024 --league W
    # one pair (small, 0.1), 1 epoch, synthetic women only: a smoke test
    .venv/bin/python bench/packaging.py --quick
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _machine

MODELS, LRS = "small,medium,large", "0.001,0.01,0.1"


def plain(args) -> None:
    """The nine trainings in this one process: plain MLflow tracking, no Projects. Prints a JSON line."""
    started = time.perf_counter()
    import mlflow
    from mlflow.entities import Metric

    from madness import dataset, scoring
    from madness import model as M
    from madness import names as n

    _machine.quiet_tensorflow()
    imported = time.perf_counter()
    store = Path(args.store)
    experiment_id = mlflow.create_experiment(
        f"{args.prefix}_plain", artifact_location=(store / "plain-artifacts").as_uri()
    )
    with tempfile.TemporaryDirectory(prefix="bench-data-") as tmp:
        files, synthetic_data = dataset.read_inputs(args.data, args.league, args.seed, Path(tmp))
        built = dataset.build(
            files,
            dataset.Seasons(args.first_season, args.val_season, args.test_season, args.last_season),
            synthetic_data,
        )
    names = built.feature_names
    x_train, y_train = dataset.split_xy(built.games, names, n.TRAIN)
    x_val, y_val = dataset.split_xy(built.games, names, n.VAL)
    x_test, y_test = dataset.split_xy(built.games, names, n.TEST)
    games = built.games
    baseline = scoring.brier(
        y_test, scoring.seed_baseline(games[games[n.SPLIT] == n.TRAIN], games[games[n.SPLIT] == n.TEST])
    )
    ready = time.perf_counter()
    client = mlflow.MlflowClient()
    briers = {}
    for model in args.models.split(","):
        for lr in args.lrs.split(","):
            with mlflow.start_run(experiment_id=experiment_id, run_name=f"{model}_{lr}") as run:
                mlflow.log_params(
                    {
                        "model": model,
                        "lr": lr,
                        "epochs": args.epochs,
                        "batch_size": args.batch_size,
                        "seed": args.seed,
                        "data": args.data,
                        "league": args.league,
                    }
                )
                trained = M.train(
                    model,
                    built.scaler,
                    float(lr),
                    x_train,
                    y_train,
                    x_val,
                    y_val,
                    args.epochs,
                    args.batch_size,
                    args.seed,
                )
                p_test = M.predict(trained.model, x_test)
                now = int(time.time() * 1000)
                curves = [
                    Metric(key, value, now, epoch)
                    for epoch, pair in enumerate(zip(trained.train_loss, trained.val_loss, strict=True), start=1)
                    for key, value in zip((n.TRAIN_LOSS, n.VAL_LOSS), pair, strict=True)
                ]
                for i in range(0, len(curves), 1000):
                    client.log_batch(run.info.run_id, metrics=curves[i : i + 1000])
                scores = scoring.all_scores(y_test, p_test)
                mlflow.log_metrics({**scores, n.BASELINE_BRIER: baseline, n.BEST_EPOCH: trained.best_epoch + 1})
                briers[f"{model}_{lr}"] = scores[n.BRIER]
            print(f"  plain {model}_{lr}: brier {scores[n.BRIER]:.4f}", flush=True)
    done = time.perf_counter()
    print(
        "PLAIN "
        + json.dumps(
            {"imports": imported - started, "data": ready - imported, "training": done - ready, "briers": briers}
        ),
        flush=True,
    )


def packaged_sweep(project: Path, args, store: Path) -> float:
    return _machine.run_sweep(
        project,
        [
            "--models",
            args.models,
            "--lrs",
            args.lrs,
            "--epochs",
            str(args.epochs),
            "--batch_size",
            str(args.batch_size),
            "--data",
            args.data,
            "--league",
            args.league,
            "--first_season",
            str(args.first_season),
            "--val_season",
            str(args.val_season),
            "--test_season",
            str(args.test_season),
            "--last_season",
            str(args.last_season),
            "--seed",
            str(args.seed),
            "--prefix",
            args.prefix,
            "--jobs",
            "1",
            "--env_manager",
            "local",
            "--force",
            "true",
        ],
        log=store / "sweep.log",
    )


def briers_of_store() -> dict[str, float]:
    """Each train run's Brier in the current (temporary) store, by '<model>_<lr>'."""
    import mlflow

    runs = mlflow.search_runs(search_all_experiments=True, filter_string="params.model != ''")
    return {
        f"{m.strip(chr(39))}_{lr.strip(chr(39))}": float(b)
        for m, lr, b in zip(runs["params.model"], runs["params.lr"], runs["metrics.brier"], strict=True)
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="one pair (small, 0.1), 1 epoch, synthetic women only (smoke test)"
    )
    parser.add_argument(
        "--data", default="synthetic", help="'synthetic' or a folder of Kaggle files, e.g. ../shared/data/mmlm2024"
    )
    parser.add_argument(
        "--league", default="both", help="M, W or both (the real data here has no men's regular season: use W)"
    )
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--models", default=MODELS)
    parser.add_argument("--lrs", default=LRS)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--first_season", type=int, default=2003)
    parser.add_argument("--val_season", type=int, default=2019)
    parser.add_argument("--test_season", type=int, default=2022)
    parser.add_argument("--last_season", type=int, default=2023)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--prefix", default="bench_packaging")
    parser.add_argument("--plain-only", dest="plain_only", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--store", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        args.models, args.lrs, args.epochs, args.league = "small", "0.1", 1, "W"
    if args.plain_only:
        plain(args)
        return
    args.data = _machine.resolve_data(args.data)
    pairs = len(args.models.split(",")) * len(args.lrs.split(","))

    _machine.header("packaging: packaged mlflow.run sweep vs one process with plain tracking")
    print(
        f"grid {args.models} x {args.lrs} ({pairs} trainings), {args.epochs} epochs, data {args.data}, league {args.league}",
        flush=True,
    )

    with (
        tempfile.TemporaryDirectory(prefix="bench-packaging-") as tmp,
        _machine.temp_store("bench-plain-") as plain_store,
    ):
        project, commit = _machine.snapshot(Path(tmp) / "project")
        print(f"project snapshot at commit {commit}\n", flush=True)

        print("1) one process, plain MLflow tracking, no Projects", flush=True)
        cmd = [
            sys.executable,
            str(Path(__file__).resolve()),
            "--plain-only",
            "--store",
            str(plain_store),
            "--models",
            args.models,
            "--lrs",
            args.lrs,
            "--epochs",
            str(args.epochs),
            "--batch_size",
            str(args.batch_size),
            "--data",
            args.data,
            "--league",
            args.league,
            "--first_season",
            str(args.first_season),
            "--val_season",
            str(args.val_season),
            "--test_season",
            str(args.test_season),
            "--last_season",
            str(args.last_season),
            "--seed",
            str(args.seed),
            "--prefix",
            args.prefix,
        ]
        with _machine.Timer() as t_plain:
            proc = subprocess.run(
                cmd, cwd=plain_store, env=_machine.child_env(project), capture_output=True, text=True, check=False
            )
        if proc.returncode != 0:
            print(proc.stdout[-3000:] + proc.stderr[-3000:], file=sys.stderr)
            sys.exit("error: the plain run failed")
        info = json.loads(next(line for line in proc.stdout.splitlines() if line.startswith("PLAIN "))[6:])
        print(
            f"  wall {t_plain.seconds:.1f} s (imports {info['imports']:.1f}, data {info['data']:.1f}, trainings {info['training']:.1f})\n",
            flush=True,
        )

        print("2) packaged: python -m steps.main (env_manager local, jobs=1, force, fresh store)", flush=True)
        with _machine.temp_store("bench-packaged-") as store:
            t_packaged = packaged_sweep(project, args, store)
            trained = [line for line in (store / "sweep.log").read_text().splitlines() if ": FINISHED in " in line]
            packaged_briers = briers_of_store()
        print(f"  wall {t_packaged:.1f} s ({len(trained)} pairs FINISHED)\n", flush=True)

    print("| way | wall time (s) | per training (s) |")
    print("| --- | ---: | ---: |")
    print(f"| one process, plain tracking | {t_plain.seconds:.1f} | {t_plain.seconds / pairs:.1f} |")
    print(f"| packaged sweep (mlflow.run per pair) | {t_packaged:.1f} | {t_packaged / pairs:.1f} |")
    same = [k for k in info["briers"] if packaged_briers.get(k) == info["briers"][k]]
    print(
        "\nBrier per pair, packaged / plain: "
        + "; ".join(f"{k} {packaged_briers.get(k, float('nan')):.4f} / {v:.4f}" for k, v in info["briers"].items())
    )
    print(f"identical Brier (all digits) in {len(same)} of {len(info['briers'])} pairs: the same trainings either way")
    print(
        f"\nratio packaged / plain: {t_packaged / t_plain.seconds:.2f}x; overhead per run: "
        f"{(t_packaged - t_plain.seconds) / pairs:.1f} s ((packaged - plain) / {pairs})"
    )


if __name__ == "__main__":
    main()
