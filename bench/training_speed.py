"""Training speed: madness.model.train(fast=True) (all epochs one XLA-compiled call) against
fast=False (plain Keras model.fit, the article's way, fed the same batches), same data and seed.

For each network: plain fit once, then the fast path twice in the same process: "cold" is the
network's first training in the process and includes tracing and XLA compilation (what a packaged
train run pays), "warm" reuses the compiled program (what every later training of that network
in one process pays). Prints the times, the ratios, and how closely the two paths agree: best
epoch, the largest gap between their per-epoch losses, and their test Brier scores. The cold and
warm runs must be bit-identical (same seed).

    .venv/bin/python bench/training_speed.py --data ../shared/data/mmlm2024 --league W   # the issue's figures
    .venv/bin/python bench/training_speed.py            # 100 epochs, synthetic league, every model
    .venv/bin/python bench/training_speed.py --quick    # 3 epochs, small model, synthetic women only: a smoke test
"""

from __future__ import annotations

import argparse

import _machine
import numpy as np

import madness.names
from madness import dataset, model


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
    built = _machine.features(_machine.resolve_data(args.data), args.league, args.seed)
    names = built.feature_names
    x_train, y_train = dataset.split_xy(built.games, names, madness.names.TRAIN)
    x_val, y_val = dataset.split_xy(built.games, names, madness.names.VAL)
    steps = -(-len(x_train) // args.batch_size)
    print(
        f"data {args.data} league {args.league}: {len(x_train)} training rows ({steps} batches of {args.batch_size}), "
        f"{len(x_val)} validation rows, {len(names)} features; {args.epochs} epochs, lr {args.lr}, seed {args.seed}",
        flush=True,
    )

    _machine.quiet_tensorflow()
    x_test, y_test = dataset.split_xy(built.games, names, madness.names.TEST)
    # TensorFlow's one-off start-up (thread pools, first graph, XLA's service) is paid here, untimed,
    # by neither side: a tiny training each way on another shape.
    for fast in (True, False):
        model.train(
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
            fast=fast,
        )

    def timed(name, fast):
        with _machine.Timer() as t:
            trained = model.train(
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
        brier = float(np.mean((model.predict(trained.model, x_test) - np.asarray(y_test)) ** 2))
        print(
            f"  {name} fast={fast}: {t.seconds:.2f} s, best epoch {trained.best_epoch + 1}, brier {brier!r}", flush=True
        )
        return t.seconds, trained, brier

    rows, all_agree = [], True
    for name in models:
        t_plain, plain, brier_plain = timed(name, fast=False)
        t_cold, cold, brier_cold = timed(name, fast=True)
        t_warm, warm, brier_warm = timed(name, fast=True)
        deterministic = brier_cold == brier_warm and cold.val_loss == warm.val_loss
        gap = max(
            float(np.max(np.abs(np.subtract(a, b))))
            for a, b in ((cold.train_loss, plain.train_loss), (cold.val_loss, plain.val_loss))
        )
        agree = deterministic and cold.best_epoch == plain.best_epoch
        all_agree &= agree
        rows.append(
            (
                name,
                t_plain,
                t_cold,
                t_warm,
                cold.best_epoch + 1,
                plain.best_epoch + 1,
                gap,
                brier_cold,
                brier_plain,
                deterministic,
            )
        )

    print()
    print(
        "| network | plain fit (s) | fast, cold (s) | fast, warm (s) | plain / cold | plain / warm "
        "| best epoch fast / plain | largest loss gap | test Brier fast / plain | cold = warm |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | --- | ---: | --- | --- |")
    for name, tp, tc, tw, bf, bp, gap, b1, b2, det in rows:
        print(
            f"| {name} | {tp:.2f} | {tc:.2f} | {tw:.2f} | {tp / tc:.1f}x | {tp / tw:.1f}x | {bf} / {bp} | {gap:.2e} "
            f"| {b1:.10f} / {b2:.10f} | {'yes' if det else 'NO'} |"
        )
    plain_total, cold_total, warm_total = (sum(r[i] for r in rows) for i in (1, 2, 3))
    print(
        f"\ntotal: plain {plain_total:.2f} s, fast cold {cold_total:.2f} s, fast warm {warm_total:.2f} s; "
        f"speed-up ratio {plain_total / cold_total:.1f}x cold, {plain_total / warm_total:.1f}x warm; "
        f"slowest cold training {max(r[2] for r in rows):.2f} s; "
        f"same best epoch and bit-identical reruns in every network: {'yes' if all_agree else 'NO'}"
    )


if __name__ == "__main__":
    main()
