"""Packaging overhead: the 3 x 3 sweep as packaged `mlflow.run` executions, with jobs=1 and jobs=2,
against the article's notebook loop, and each packaged run's overhead against a bare interpreter.

Sides, each timed as a whole command in a fresh store of its own, one after the other:

- the interpreter floor: `python -c "import tensorflow, mlflow"`, a few times (median): what any
  process that trains and tracks pays before it does anything, hence the least a process per run costs;
- the notebook loop, as the article's notebook does it: one Python process; for each model an
  experiment `<prefix>_<model>` (fetched or created, `mlflow.set_experiment`) and in it one run per
  learning rate, `<model>_<lr>`: log params, seed (madness.model.set_seeds), build the network
  (madness.model.build), plain Keras `fit` (shuffle, validation data, the given epochs and batch size)
  with a `ModelCheckpoint(save_best_only=True, monitor="val_loss")` to a file, reload that file,
  score on the test seasons, log the metrics, the loss plot and the model (`mlflow.tensorflow.log_model`
  with a signature and MLflow's defaults otherwise, as a notebook calls it: MLflow then infers the
  model's pip requirements by loading it in a child process, which the notebook pays per run);
- the packaged sweep, `python -m steps.main` (env_manager local, force): an ingest run, then a
  `mlflow.run` of the train step per pair (its own process: interpreter, imports, features
  downloaded from the ingest run, the fast training path, a pyfunc model, datasets, loss curves), then
  the report; with jobs=1, and again with jobs=2 (two single-threaded trainings at once).

Per-run overhead, on each side: (wall - data - sum of training) / pairs, where training is the time
spent seeding, building and fitting the networks (the train step's own "training" seconds; the
notebook's set_seeds + build + fit) and data is the ingest run (its lifetime in the store) or the
notebook's in-process feature build. It is everything else, shared over the pairs: processes,
imports, launching, scoring, logging, the sweep's report. The packaged jobs=1 wall is also split
into its parts from the store (each run's lifetime) and each train run's own split. The networks
are trained and scored differently on the two sides (madness.model.train's path and the pyfunc model
against plain fit, a checkpoint file and Keras' predict), so their training seconds differ and their
Brier scores are only set side by side; jobs=1 and jobs=2 must give identical Brier scores, all digits.

    .venv/bin/python bench/packaging.py                     # synthetic league, 100 epochs
    # the article's 100 epochs, real women's data:
    .venv/bin/python bench/packaging.py --data ../shared/data/mmlm2024 --league W
    # one pair (small, 0.1), 1 epoch, synthetic women only: a smoke test
    .venv/bin/python bench/packaging.py --quick
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _machine

NOTEBOOK_LINE = "NOTEBOOK "  # how the notebook child hands its timings and scores to the parent
FLOOR_CODE = "import tensorflow, mlflow"
# What the notebook child and the sweeps are both given, under steps.main's names.
SHARED = (
    "models",
    "lrs",
    "epochs",
    "batch_size",
    "data",
    "league",
    "first_season",
    "val_season",
    "test_season",
    "last_season",
    "seed",
    "prefix",
)


def pairs_of(args) -> list[tuple[str, str]]:
    """(model, lr) in the sweep's order and spelling (madness.sweep's canonical learning rates), so
    that both sides name a pair alike."""
    from madness import sweep

    return [
        (model, lr) for model in sweep.split_list("models", args.models) for lr in sweep.split_list("lrs", args.lrs)
    ]


def notebook(args) -> None:
    """Run the article's loop in this one process; print one NOTEBOOK JSON line for the parent."""
    started = time.perf_counter()
    import mlflow
    import numpy as np
    from mlflow.models import infer_signature

    import madness.model
    import madness.names
    from madness import dataset, plots, scoring

    keras = madness.model.import_keras()
    _machine.quiet_tensorflow()
    imported = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-data-") as tmp:
        files, synthetic_data = dataset.read_inputs(args.data, args.league, args.seed, Path(tmp))
        built = dataset.build(
            files,
            dataset.Seasons(args.first_season, args.val_season, args.test_season, args.last_season),
            synthetic_data,
        )
    names = built.feature_names
    x_train, y_train = dataset.split_xy(built.games, names, madness.names.TRAIN)
    x_val, y_val = dataset.split_xy(built.games, names, madness.names.VAL)
    x_test, y_test = dataset.split_xy(built.games, names, madness.names.TEST)
    # The same float32 arrays madness.model.train feeds Keras, so only the training path differs.
    x_train, y_train, x_val, y_val, x_test = (
        np.asarray(a, dtype="float32") for a in (x_train, y_train, x_val, y_val, x_test)
    )
    ready = time.perf_counter()

    runs = {}
    for model, lr in pairs_of(args):
        mlflow.set_experiment(f"{args.prefix}_{model}")  # the article: fetched if it exists, created otherwise
        run_started = time.perf_counter()
        with mlflow.start_run(run_name=f"{model}_{lr}"), tempfile.TemporaryDirectory(prefix="bench-ckpt-") as ckpt:
            mlflow.log_params({"model": model, "lr": lr, "epochs": args.epochs, "batch_size": args.batch_size})
            fit_started = time.perf_counter()
            madness.model.set_seeds(args.seed)
            network = madness.model.build(model, built.scaler, float(lr))
            best_file = Path(ckpt) / "best_model.keras"
            history = network.fit(
                x_train,
                y_train,
                validation_data=(x_val, y_val),
                epochs=args.epochs,
                batch_size=args.batch_size,
                shuffle=True,
                verbose=0,
                callbacks=[keras.callbacks.ModelCheckpoint(str(best_file), monitor="val_loss", save_best_only=True)],
            )
            fitted = time.perf_counter()
            # No file when no validation loss was ever finite (a diverged run): the notebook keeps the last weights.
            best = keras.models.load_model(best_file) if best_file.exists() else network
            p_test = madness.model.predict(best, x_test)
            train_loss, val_loss = history.history["loss"], history.history["val_loss"]
            best_epoch = min(
                range(len(val_loss)), key=val_loss.__getitem__
            )  # the first of equal losses, as the checkpoint
            scores = scoring.all_scores(y_test, p_test)
            mlflow.log_metrics({**scores, madness.names.BEST_EPOCH: best_epoch + 1})
            mlflow.log_figure(plots.loss_figure(train_loss, val_loss, best_epoch, model, lr), madness.names.LOSS_PLOT)
            logging_model = time.perf_counter()
            # An array signature: the tensorflow flavour takes tensor specs only, not a table's columns.
            mlflow.tensorflow.log_model(best, name=madness.names.MODEL_DIR, signature=infer_signature(x_test, p_test))
            logged = time.perf_counter()
        runs[f"{model}_{lr}"] = {
            "brier": scores[madness.names.BRIER],
            "seconds": time.perf_counter() - run_started,
            "training": fitted - fit_started,
            "log_model": logged - logging_model,
        }
        print(
            f"  notebook {model}_{lr}: brier {scores[madness.names.BRIER]:.4f}, best epoch {best_epoch + 1}", flush=True
        )
    print(
        NOTEBOOK_LINE + json.dumps({"imports": imported - started, "data": ready - imported, "runs": runs}), flush=True
    )


def run_notebook(project: Path, args, store: Path) -> tuple[float, dict]:
    """Run the notebook loop in a fresh interpreter (its imports count, as a notebook kernel's would), in `store`."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--notebook-only", *shared_args(args)]
    with _machine.Timer() as timer:
        proc = subprocess.run(
            cmd, cwd=store, env=_machine.child_env(project), capture_output=True, text=True, check=False
        )
    if proc.returncode != 0:
        print(proc.stdout[-3000:] + proc.stderr[-3000:], file=sys.stderr)
        sys.exit("error: the notebook loop failed")
    for line in proc.stdout.splitlines():
        if line.startswith("  notebook "):
            print(line, flush=True)
    info = json.loads(
        next(line for line in proc.stdout.splitlines() if line.startswith(NOTEBOOK_LINE))[len(NOTEBOOK_LINE) :]
    )
    return timer.seconds, info


def shared_args(args) -> list[str]:
    """Return the arguments both sides take alike (steps.main's names), with the values of this run."""
    return [arg for key in SHARED for arg in (f"--{key}", str(getattr(args, key)))]


def packaged(project: Path, args, jobs: int) -> dict:
    """One packaged sweep in a fresh store: its wall time, its runs as the store has them, and each
    train run's own split as the step printed it."""
    with _machine.temp_store(f"bench-packaged-{jobs}-") as store:
        wall = _machine.run_sweep(
            project,
            [*shared_args(args), "--jobs", str(jobs), "--env_manager", "local", "--force", "true"],
            log=store / "sweep.log",
        )
        output = (store / "sweep.log").read_text()
        runs = _machine.store_runs()
    trains = {run["name"]: run for run in runs if run["entry_point"] == "train"}
    ingest = [run for run in runs if run["entry_point"] == "ingest"]
    finished = sum(": FINISHED in " in line for line in output.splitlines())
    print(f"  wall {wall:.1f} s ({finished} pairs FINISHED)\n", flush=True)
    return {"wall": wall, "ingest": sum(run["seconds"] for run in ingest), "trains": trains}


def main() -> None:
    parser = _machine.sweep_parser(
        __doc__.splitlines()[0], "one pair (small, 0.1), 1 epoch, synthetic women only (smoke test)", epochs=100
    )
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--first_season", type=int, default=2003)
    parser.add_argument("--val_season", type=int, default=2019)
    parser.add_argument("--test_season", type=int, default=2022)
    parser.add_argument("--last_season", type=int, default=2023)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--prefix", default="bench_packaging")
    parser.add_argument("--floor_runs", type=int, default=5, help="bare interpreters to time (median; 3 with --quick)")
    parser.add_argument(
        "--notebook-only", dest="notebook_only", action="store_true", help="(internal) the notebook side's child"
    )
    args = parser.parse_args()
    if args.quick:
        args.models, args.lrs, args.epochs, args.league, args.floor_runs = "small", "0.1", 1, "W", 3
    if args.notebook_only:
        notebook(args)
        return
    args.data = _machine.resolve_data(args.data)
    pairs = pairs_of(args)
    count = len(pairs)

    _machine.header("packaging: packaged mlflow.run sweep (jobs=1, jobs=2) vs the article's notebook loop")
    print(
        f"grid {args.models} x {args.lrs} ({count} pairs), {args.epochs} epochs, batch {args.batch_size}, "
        f"data {args.data}, league {args.league}",
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="bench-packaging-") as tmp:
        project, commit = _machine.snapshot(Path(tmp) / "project")
        print(f"project snapshot at commit {commit}\n", flush=True)

        print(f"0) interpreter floor: {args.floor_runs} x python -c {FLOOR_CODE!r}", flush=True)
        floors = _machine.interpreter_floor(project, FLOOR_CODE, args.floor_runs)
        floor = statistics.median(floors)
        print(f"  {', '.join(f'{s:.1f}' for s in floors)} s; median {floor:.1f} s\n", flush=True)

        print(
            "1) the article's notebook loop: one process, an experiment per model, plain fit + checkpoint file",
            flush=True,
        )
        with _machine.temp_store("bench-notebook-") as store:
            t_notebook, nb = run_notebook(project, args, store)
        print(
            f"  wall {t_notebook:.1f} s (imports {nb['imports']:.1f}, data {nb['data']:.1f}, "
            f"runs {sum(r['seconds'] for r in nb['runs'].values()):.1f})\n",
            flush=True,
        )

        sweeps = {}
        for jobs in (1, 2):
            print(
                f"{jobs + 1}) packaged: python -m steps.main (env_manager local, jobs={jobs}, force, fresh store)",
                flush=True,
            )
            sweeps[jobs] = packaged(project, args, jobs)

    report(args, pairs, floors, t_notebook, nb, sweeps)


def report(args, pairs, floors, t_notebook, nb, sweeps) -> None:
    count = len(pairs)
    names = [f"{model}_{lr}" for model, lr in pairs]
    one, two = sweeps[1], sweeps[2]
    floor = statistics.median(floors)
    nb_training = sum(r["training"] for r in nb["runs"].values())
    nb_log_model = sum(r["log_model"] for r in nb["runs"].values())
    nb_runs = sum(r["seconds"] for r in nb["runs"].values())

    def training(sweep):
        return sum(t["training"] for t in sweep["trains"].values())

    print("| side | wall time (s) | per pair (s) | training, sum (s) | ratio to the notebook loop |")
    print("| --- | ---: | ---: | ---: | ---: |")
    print(
        f"| the article's notebook loop (one process) | {t_notebook:.1f} | {t_notebook / count:.1f} | {nb_training:.1f} | 1.00x |"
    )
    for jobs, sweep in sweeps.items():
        print(
            f"| packaged sweep, jobs={jobs} (mlflow.run per pair) | {sweep['wall']:.1f} | {sweep['wall'] / count:.1f} | "
            f"{training(sweep):.1f} | {sweep['wall'] / t_notebook:.2f}x |"
        )
    print(
        "\ntraining, sum: the train step's own 'training' seconds (seeds, build, fast fit); the notebook's set_seeds + "
        "build + plain fit with a checkpoint file. With jobs=2 two single-threaded trainings overlap, so their sum exceeds the time they took."
    )

    # Where the packaged jobs=1 sweep's time goes: its runs ran one after another, so the parts add up to the wall.
    trains = one["trains"].values()
    lifetimes = sum(t["seconds"] for t in trains)
    startup = sum(t["startup"] for t in trains)
    scoring = sum(t["scoring"] for t in trains)
    launch = lifetimes - startup - training(one) - scoring
    own = one["wall"] - one["ingest"] - lifetimes
    print("\nwhere the time goes (s), total and per pair:\n")
    print("| side | part | total (s) | per pair (s) |")
    print("| --- | --- | ---: | ---: |")
    rows = [
        ("packaged jobs=1", "ingest run (its lifetime in the store)", one["ingest"]),
        ("packaged jobs=1", "train runs: launch, interpreter, imports before the step's main, end of run", launch),
        ("packaged jobs=1", "train runs: start-up and data (TensorFlow, features downloaded)", startup),
        ("packaged jobs=1", "train runs: training", training(one)),
        ("packaged jobs=1", "train runs: scoring and logging (model, plot, curves, datasets)", scoring),
        ("packaged jobs=1", "the sweep's own: its start-up, launches between runs, report", own),
        ("notebook loop", "interpreter and imports (tensorflow, mlflow, madness)", t_notebook - nb["data"] - nb_runs),
        ("notebook loop", "data (features built in the process)", nb["data"]),
        ("notebook loop", "training (set_seeds, build, fit with checkpoint)", nb_training),
        ("notebook loop", "mlflow.tensorflow.log_model (pip requirements inferred)", nb_log_model),
        (
            "notebook loop",
            "rest of the runs: reload, score, params, metrics, figure",
            nb_runs - nb_training - nb_log_model,
        ),
    ]
    for side, part, secs in rows:
        print(f"| {side} | {part} | {secs:.1f} | {secs / count:.1f} |")

    # a) The whole sweep's time but the data and the trainings, spread over the pairs: what a user waits
    # for beyond training, the sweep's start-up and report included.
    overhead = (one["wall"] - one["ingest"] - training(one)) / count
    nb_overhead = (t_notebook - nb["data"] - nb_training) / count
    # b) A run's own cost beyond its training, one-off costs (sweep, report, notebook imports) left out.
    run_overhead = (lifetimes - training(one)) / count
    nb_run_overhead = (nb_runs - nb_training) / count
    floor_text = ", ".join(f"{s:.1f}" for s in floors)
    print(
        "\nper-run overhead (s), two ways:"
        f"\n  a) whole command, spread over the pairs = (wall - data - sum of training) / {count}"
        f"\n     packaged jobs=1: ({one['wall']:.1f} - ingest {one['ingest']:.1f} - training {training(one):.1f}) / {count} = {overhead:.1f}"
        f"\n     notebook loop:   ({t_notebook:.1f} - data {nb['data']:.1f} - training {nb_training:.1f}) / {count} = {nb_overhead:.1f}"
        f"\n  b) per run = (sum of the runs' lifetimes - sum of training) / {count}, the sweep's and the notebook's one-off costs left out"
        f"\n     packaged jobs=1: ({lifetimes:.1f} - {training(one):.1f}) / {count} = {run_overhead:.1f}"
        f" (lifetime in the store: from mlflow.run creating the run to its step ending it)"
        f"\n     notebook loop:   ({nb_runs:.1f} - {nb_training:.1f}) / {count} = {nb_run_overhead:.1f}"
        f" (start_run to its end; of which log_model {nb_log_model / count:.1f})"
        f"\n  interpreter floor: {floor:.1f}, the median of {len(floors)} x python -c {FLOOR_CODE!r} ({floor_text}):"
        " a fresh process per run pays at least this"
        f"\n  packaged overhead - floor: a) {overhead - floor:.1f}, b) {run_overhead - floor:.1f} per run"
        f"\n  packaged overhead - notebook overhead: a) {overhead - nb_overhead:.1f}, b) {run_overhead - nb_run_overhead:.1f} per run"
    )

    briers = {jobs: {name: t["brier"] for name, t in sweep["trains"].items()} for jobs, sweep in sweeps.items()}
    notebook_briers = {name: run["brier"] for name, run in nb["runs"].items()}
    print("\nBrier per pair (the notebook loop trains and scores by another path: its scores may differ):\n")
    print("| pair | packaged jobs=1 | packaged jobs=2 | notebook loop |")
    print("| --- | ---: | ---: | ---: |")
    for name in names:
        cells = [briers[1].get(name), briers[2].get(name), notebook_briers.get(name)]
        print(f"| {name} | " + " | ".join("missing" if c is None else f"{c:.4f}" for c in cells) + " |")
    same = sum(name in briers[1] and briers[1][name] == briers[2].get(name) for name in names)
    print(f"\npackaged jobs=1 and jobs=2 identical Brier (all digits) in {same} of {count} pairs")
    exact = sum(name in briers[1] and briers[1][name] == notebook_briers.get(name) for name in names)
    close = sum(
        name in briers[1] and name in notebook_briers and f"{briers[1][name]:.4f}" == f"{notebook_briers[name]:.4f}"
        for name in names
    )
    print(f"notebook loop equal to packaged jobs=1 in {close} of {count} pairs to 4 decimals, {exact} to all digits")

    print(
        f"\nratio packaged jobs=1 / notebook loop: {one['wall'] / t_notebook:.2f}x; "
        f"jobs=2 / notebook loop: {two['wall'] / t_notebook:.2f}x; "
        f"speed-up jobs=2 over jobs=1: {one['wall'] / two['wall']:.2f}x"
    )


if __name__ == "__main__":
    main()
