"""Seeds: how much of a pair's Brier is its random start, and what averaging seeds gives.

For every pair of the grid, trains `--seeds` networks from the seeds a train run with seeds=N
uses (madness.model.member_seeds of --seed: the first is --seed itself), in one process through
the fast path, and scores each on the test seasons (the networks' own predict, not the saved
model's: the last bits may differ from a train run's logged Brier). Prints:
1. each pair's Brier over the seeds: mean, sd, min, max, and the seeds' best epochs;
2. the Brier of the average of the first 5 seeds (a seeds=5 run's model) against a single seed
   (the first) and against the mean single seed;
3. whether the ranking of the pairs survives seeds: the ranking by the first seed alone against
   the ranking by the mean over all seeds (Kendall's tau), and how often each pair is the best
   when one seed decides.

    .venv/bin/python bench/seeds.py --data ../shared/data/mmlm2024 --league W   # the issue's figures
    .venv/bin/python bench/seeds.py --quick    # 2 seeds, 3 epochs, small model, synthetic women: a smoke test
"""

from __future__ import annotations

import argparse
import itertools
from collections import Counter

import _machine
import numpy as np

import madness.names
from madness import dataset, model, scoring, sweep

AVERAGED = 5  # the seeds=5 run of point 4's "5-seed average"


def kendall_tau(a: list[float], b: list[float]) -> float:
    """Kendall's tau-a of two scorings of the same items (no ties expected in float Briers)."""
    pairs = list(itertools.combinations(range(len(a)), 2))
    agree = sum(np.sign(a[i] - a[j]) * np.sign(b[i] - b[j]) for i, j in pairs)
    return float(agree / len(pairs))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 seeds, 3 epochs, small, synthetic women (smoke test)")
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--models", default="small,medium,large")
    parser.add_argument("--lrs", default="0.001,0.01,0.1")
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--data", default="synthetic", help="'synthetic' or a folder of Kaggle files")
    parser.add_argument("--league", default="both")
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    if args.quick:
        args.seeds, args.epochs, args.models, args.lrs, args.league = 2, 3, "small", "0.001,0.01", "W"

    _machine.header(f"seeds: each pair's Brier over {args.seeds} seeds")
    built = _machine.features(_machine.resolve_data(args.data), args.league, args.seed)
    names = built.feature_names
    x_train, y_train = dataset.split_xy(built.games, names, madness.names.TRAIN)
    x_val, y_val = dataset.split_xy(built.games, names, madness.names.VAL)
    x_test, y_test = dataset.split_xy(built.games, names, madness.names.TEST)
    seeds = model.member_seeds(args.seed, args.seeds)
    print(
        f"data {args.data} league {args.league}: {len(x_train)} training rows, {len(x_val)} validation rows, "
        f"{len(x_test)} test rows ({len(x_test) // 2} games); {args.epochs} epochs; seeds {seeds}",
        flush=True,
    )
    _machine.quiet_tensorflow()

    pairs = sweep.grid(args.models, args.lrs)
    results = {}
    with _machine.Timer() as total:
        for pair in pairs:
            predictions, best_epochs = [], []
            for seed in seeds:
                trained = model.train(
                    pair.model,
                    built.scaler,
                    float(pair.lr),
                    x_train,
                    y_train,
                    x_val,
                    y_val,
                    args.epochs,
                    args.batch_size,
                    seed,
                )
                predictions.append(model.predict(trained.model, x_test))
                best_epochs.append(trained.best_epoch + 1)
            briers = [scoring.brier(y_test, p) for p in predictions]
            averaged = scoring.brier(y_test, np.mean(predictions[:AVERAGED], axis=0))
            results[pair.name] = (briers, averaged, best_epochs)
            print(f"  {pair.name}: {' '.join(f'{b:.4f}' for b in briers)}", flush=True)
    print(f"{len(pairs) * len(seeds)} trainings in {total.seconds:.1f} s")

    print(f"\n1. each pair's test Brier over {len(seeds)} seeds\n")
    print("| pair | mean | sd | min | max | max - min | best epochs |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | --- |")
    for name, (briers, _, epochs) in results.items():
        sd = np.std(briers, ddof=1) if len(briers) > 1 else float("nan")
        print(
            f"| {name} | {np.mean(briers):.4f} | {sd:.4f} | {min(briers):.4f} | {max(briers):.4f} "
            f"| {max(briers) - min(briers):.4f} | {', '.join(map(str, epochs))} |"
        )

    used = min(AVERAGED, len(seeds))
    print(f"\n2. the average of the first {used} seeds' predictions against one seed\n")
    print(
        f"| pair | first seed | mean single seed (first {used}) | {used}-seed average | average - first | average - mean |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for name, (briers, averaged, _) in results.items():
        mean_single = float(np.mean(briers[:used]))
        print(
            f"| {name} | {briers[0]:.4f} | {mean_single:.4f} | {averaged:.4f} | {averaged - briers[0]:+.4f} "
            f"| {averaged - mean_single:+.4f} |"
        )

    names_ = list(results)
    first = [results[p][0][0] for p in names_]
    means = [float(np.mean(results[p][0])) for p in names_]
    by_first = sorted(names_, key=lambda p: results[p][0][0])
    by_mean = sorted(names_, key=lambda p: np.mean(results[p][0]))
    winners = Counter(min(names_, key=lambda p, i=i: results[p][0][i]) for i in range(len(seeds)))
    print("\n3. does the ranking survive seeds?\n")
    print(f"ranked by the first seed alone: {', '.join(by_first)}")
    print(f"ranked by the mean over {len(seeds)} seeds: {', '.join(by_mean)}")
    print(f"Kendall's tau between the two rankings: {kendall_tau(first, means):+.2f}")
    print(
        f"best when one seed decides, over the {len(seeds)} seeds: "
        + ", ".join(f"{p} {k}x" for p, k in winners.most_common())
    )
    tau_by_seed = [kendall_tau([results[p][0][i] for p in names_], means) for i in range(len(seeds))]
    print(
        f"one seed's ranking against the mean's, Kendall's tau over the seeds: median {np.median(tau_by_seed):+.2f}, "
        f"min {min(tau_by_seed):+.2f}, max {max(tau_by_seed):+.2f}"
    )


if __name__ == "__main__":
    main()
