"""Season-by-season backtest on the real women's data: every configuration of the article's grid
and a seed-difference logistic regression, each test season predicted only from earlier seasons.

For each test season S in 2015..2023 that had a tournament (not 2020): validation season V = the
latest earlier tournament season (S-1, or S-2 after 2020); training seasons first_season..V-1: the
splits of `mlflow run . -e backtest` (madness.backtest.season_splits), which tracks each in MLflow. The scaler is fit on
the training rows; each network (100 epochs, the best validation epoch kept) is trained on them
and scored by Brier on S. The seed-difference logistic regression is fit on the same training
seasons, and also, for reference, on every season before S (training + validation). Brier is
over both rows of each game (each game seen from both sides), as the train step scores it.

The files are read and the features built once (madness.dataset.assemble); each season only
selects rows. No MLflow: this measures the models, not the tracking.

    .venv/bin/python bench/backtest.py                 # 8 seasons x 9 configs, 100 epochs (72 trainings)
    .venv/bin/python bench/backtest.py --quick         # season 2023, small 0.01, 3 epochs: a smoke test
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import _machine
import numpy as np

import madness.model
import madness.names
from madness import backtest, dataset, features, kaggle, scoring

SEED_LR = "seed-diff LR (train seasons)"
SEED_LR_ALL = "seed-diff LR (all earlier seasons)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="season 2023, small 0.01, 3 epochs (smoke test)")
    parser.add_argument(
        "--data", default=str(_machine.REAL_DATA), help="folder of Kaggle files (default ../shared/data/mmlm2024)"
    )
    parser.add_argument("--league", default="W")
    parser.add_argument("--first_season", type=int, default=2003, help="first training season")
    parser.add_argument("--seasons", default="2015-2023", help="test seasons, a range A-B or a comma list")
    parser.add_argument("--models", default="small,medium,large")
    parser.add_argument("--lrs", default="0.001,0.01,0.1")
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    if args.quick:
        args.seasons, args.models, args.lrs, args.epochs = "2023", "small", "0.01", 3
    wanted = backtest.parse_seasons(args.seasons)
    configs = [(m, lr) for m in args.models.split(",") for lr in args.lrs.split(",")]

    _machine.header("backtest: season by season, every configuration and the seed-difference baseline")
    folder = Path(_machine.resolve_data(args.data))
    if not (folder / kaggle.file_name(args.league, madness.names.REGULAR_COMPACT)).is_file():
        sys.exit(f"error: {folder} has no {kaggle.file_name(args.league, madness.names.REGULAR_COMPACT)}")
    _machine.quiet_tensorflow()
    import keras

    files = [kaggle.read_league(folder, lg) for lg in kaggle.leagues_for(args.league)]
    games, team_season, _ = dataset.assemble(files)
    names = features.feature_columns(features.team_feature_columns(team_season))
    games = games[games[madness.names.SEASON] >= args.first_season].reset_index(drop=True)
    dataset.check_complete(games, names)
    played = set(games[madness.names.SEASON].unique().tolist())
    splits, skipped = backtest.season_splits(wanted, sorted(played), args.first_season)
    tests = [split.test for split in splits]
    print(
        f"data {folder} league {args.league}: {len(games) // 2} tournament games {min(played)}-{max(played)}, "
        f"{len(names)} features; test seasons {tests}" + (f" (no tournament: {skipped})" if skipped else ""),
        flush=True,
    )
    print(
        f"{len(configs)} configurations x {len(tests)} seasons = {len(configs) * len(tests)} trainings, "
        f"{args.epochs} epochs, batch {args.batch_size}, seed {args.seed}, fast=True\n",
        flush=True,
    )

    briers: dict[str, dict[int, float]] = {
        name: {} for name in [f"{m} {lr}" for m, lr in configs] + [SEED_LR, SEED_LR_ALL]
    }
    best_epochs: dict[str, dict[int, int]] = {f"{m} {lr}": {} for m, lr in configs}
    n_games: dict[int, int] = {}
    total, done, started = len(configs) * len(tests), 0, time.perf_counter()
    for split in splits:
        season, val = split.test, split.val
        train_seasons = [s for s in sorted(played) if split.first <= s < val]
        train = games[games[madness.names.SEASON].isin(train_seasons)]
        valid = games[games[madness.names.SEASON] == val]
        test = games[games[madness.names.SEASON] == season]
        n_games[season] = len(test) // 2
        y_test = test[madness.names.TARGET].to_numpy(dtype="float64")
        scaler = dataset.fit_scaler(train, names)
        briers[SEED_LR][season] = scoring.brier(y_test, scoring.seed_baseline(train, test))
        briers[SEED_LR_ALL][season] = scoring.brier(
            y_test, scoring.seed_baseline(games[games[madness.names.SEASON] < season], test)
        )
        print(
            f"season {season}: train {train_seasons[0]}-{train_seasons[-1]} ({len(train) // 2} games), val {val} "
            f"({len(valid) // 2} games), test {len(test) // 2} games; seed LR {briers[SEED_LR][season]:.4f}",
            flush=True,
        )
        x_train, y_train = train[names].astype("float64"), train[madness.names.TARGET].to_numpy(dtype="float64")
        x_val, y_val = valid[names].astype("float64"), valid[madness.names.TARGET].to_numpy(dtype="float64")
        for model, lr in configs:
            t0 = time.perf_counter()
            trained = madness.model.train(
                model,
                scaler,
                float(lr),
                x_train,
                y_train,
                x_val,
                y_val,
                args.epochs,
                args.batch_size,
                args.seed,
                fast=True,
            )
            key = f"{model} {lr}"
            briers[key][season] = scoring.brier(y_test, madness.model.predict(trained.model, test[names]))
            best_epochs[key][season] = trained.best_epoch + 1
            keras.backend.clear_session()
            done += 1
            elapsed = time.perf_counter() - started
            print(
                f"  [{done}/{total}] {key}: brier {briers[key][season]:.4f}, best epoch {trained.best_epoch + 1}, "
                f"{time.perf_counter() - t0:.1f} s (eta {elapsed / done * (total - done) / 60:.1f} min)",
                flush=True,
            )

    games_total = sum(n_games.values())
    weights = np.array([n_games[s] for s in tests], dtype="float64")
    print(
        f"\nBrier by configuration: mean over {len(tests)} seasons (each season equal), pooled over all "
        f"{games_total} games (each game equal), and per season; lower is better, 0.25 is a coin flip.\n"
    )
    print(
        "| configuration | mean over seasons | ratio to seed LR (train seasons) | pooled over games | "
        + " | ".join(map(str, tests))
        + " |"
    )
    print("| --- | ---: | ---: | ---: | " + " | ".join("---:" for _ in tests) + " |")
    order = sorted(briers, key=lambda k: np.mean([briers[k][s] for s in tests]))
    reference = np.mean([briers[SEED_LR][s] for s in tests])
    for key in order:
        values = np.array([briers[key][s] for s in tests])
        print(
            f"| {key} | {values.mean():.4f} | {values.mean() / reference:.3f} | {np.average(values, weights=weights):.4f} | "
            + " | ".join(f"{v:.4f}" for v in values)
            + " |"
        )
    print("| games | | | " + f"{games_total} | " + " | ".join(str(n_games[s]) for s in tests) + " |")
    print(
        "\nbest epoch (of "
        + str(args.epochs)
        + ") per configuration and season: "
        + "; ".join(f"{k}: " + ",".join(str(best_epochs[k][s]) for s in tests) for k in best_epochs)
    )
    best = order[0]
    print(
        f"\nbest: {best} (mean {np.mean([briers[best][s] for s in tests]):.4f}); seed-diff LR on the same training seasons: "
        f"{np.mean([briers[SEED_LR][s] for s in tests]):.4f}; total time {(time.perf_counter() - started) / 60:.1f} min"
    )


if __name__ == "__main__":
    main()
