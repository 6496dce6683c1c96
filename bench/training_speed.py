"""Training speed: madness.model.train(fast=True) (a whole epoch per TensorFlow call) against
fast=False (plain model.fit with Keras defaults, the article's way), same data, seed and settings.

For each model size, one training each way; prints both times, the speed-up, and whether the two
ended with identical weights and identical per-epoch losses (they should: same updates, same order).

    .venv/bin/python bench/training_speed.py            # 100 epochs, synthetic league, every model
    .venv/bin/python bench/training_speed.py --quick    # 3 epochs, small model, synthetic women only: a smoke test
    .venv/bin/python bench/training_speed.py --data ../shared/data/mmlm2024 --league W
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import _machine
import numpy as np

from madness import dataset
from madness import model as M
from madness import names as n


def features(data: str, league: str, seed: int) -> dataset.Built:
    with tempfile.TemporaryDirectory(prefix="bench-data-") as tmp:
        files, synthetic_data = dataset.read_inputs(data, league, seed, Path(tmp))
        return dataset.build(files, dataset.Seasons(2003, 2019, 2022, 2023), synthetic_data)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 epochs, small model, synthetic women only (smoke test)")
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--models", default="small,medium,large")
    parser.add_argument("--lr", type=float, default=0.001)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--data", default="synthetic", help="'synthetic' or a folder of Kaggle files")
    parser.add_argument("--league", default="both")
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    if args.quick:
        args.epochs, args.models, args.league = 3, "small", "W"
    models = [m.strip() for m in args.models.split(",") if m.strip()]

    _machine.header("training speed: train(fast=True) vs fast=False (plain Keras fit)")
    built = features(_machine.resolve_data(args.data), args.league, args.seed)
    names = built.feature_names
    x_train, y_train = dataset.split_xy(built.games, names, n.TRAIN)
    x_val, y_val = dataset.split_xy(built.games, names, n.VAL)
    steps = -(-len(x_train) // args.batch_size)
    print(
        f"data {args.data} league {args.league}: {len(x_train)} training rows ({steps} batches of {args.batch_size}), "
        f"{len(x_val)} validation rows, {len(names)} features; {args.epochs} epochs, lr {args.lr}, seed {args.seed}",
        flush=True,
    )

    _machine.quiet_tensorflow()
    # TensorFlow's one-off start-up (thread pools, first graph) is paid here, untimed, by neither side.
    M.train(
        models[0],
        built.scaler,
        args.lr,
        x_train[:64],
        y_train[:64],
        x_val[:64],
        y_val[:64],
        1,
        args.batch_size,
        args.seed,
        fast=False,
    )

    rows, all_identical = [], True
    for name in models:
        results = {}
        for fast in (True, False):
            with _machine.Timer() as t:
                trained = M.train(
                    name,
                    built.scaler,
                    args.lr,
                    x_train,
                    y_train,
                    x_val,
                    y_val,
                    args.epochs,
                    args.batch_size,
                    args.seed,
                    fast=fast,
                )
            results[fast] = (t.seconds, trained)
            print(
                f"  {name} fast={fast}: {t.seconds:.1f} s, best epoch {trained.best_epoch + 1}, "
                f"best val_loss {min(trained.val_loss):.6f}",
                flush=True,
            )
        (t_fast, a), (t_slow, b) = results[True], results[False]
        same_weights = all(
            np.array_equal(w1, w2) for w1, w2 in zip(a.model.get_weights(), b.model.get_weights(), strict=True)
        )
        same_losses = a.val_loss == b.val_loss and a.train_loss == b.train_loss
        identical = same_weights and same_losses and a.best_epoch == b.best_epoch
        all_identical &= identical
        rows.append((name, t_fast, t_slow, t_slow / t_fast, identical, a.val_loss[-1], b.val_loss[-1]))

    print()
    print(
        "| model | fast=True (s) | fast=False (s) | speed-up | identical weights and losses | final val_loss fast / plain |"
    )
    print("| --- | ---: | ---: | ---: | --- | --- |")
    for name, tf_, ts, ratio, identical, v1, v2 in rows:
        print(
            f"| {name} | {tf_:.1f} | {ts:.1f} | {ratio:.2f}x | {'yes' if identical else 'NO'} | {v1:.8f} / {v2:.8f} |"
        )
    total_fast, total_slow = sum(r[1] for r in rows), sum(r[2] for r in rows)
    print(
        f"\ntotal: fast {total_fast:.1f} s, plain {total_slow:.1f} s, speed-up ratio {total_slow / total_fast:.2f}x; "
        f"identical in every model: {'yes' if all_identical else 'NO'}"
    )


if __name__ == "__main__":
    main()
