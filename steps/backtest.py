"""Backtest: every pair of the grid predicts each chosen season from the seasons before it alone.

How it trains, names and reports is docs/backtest.md; its params are PARAMS below (and MLproject);
what it logs is the README's table "What each run records". Season s is an ordinary `train` run
(test_season = last_season = s; madness.backtest.season_splits draws its other seasons) from
features built here and logged to this run (`features/<season>/`). A pair's run is reused when
its season runs are. The process exits non-zero naming any failed season run.

    mlflow run . -e backtest -P models=small,medium -P lrs=0.001,0.01 -P data=../shared/data/mmlm2024 -P league=W --env-manager local
    mlflow run . -e backtest -P models=small -P lrs=0.01 -P epochs=5 -P seasons=2021-2023 --env-manager local
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from itertools import groupby, product
from pathlib import Path

import mlflow
import pandas as pd
from mlflow.entities import Metric, RunTag
from mlflow.entities import Param as RunParam

from madness import backtest, dataset, describe, names, plots, sweep
from madness import report as tables
from madness.cli import DATA_PARAMS, Param, parse, season
from madness.errors import UserError
from madness.names import Status
from steps import main as sweep_step
from steps._coordination import Claims, Liveness, claim_key, end_orphans, liveness_tags
from steps._entry import code_identity, entry_point, run_as_script, start_run
from steps._launcher import Job, Launcher
from steps._runs import end_run

_MAIN = {p.name: p for p in sweep_step.PARAMS}
_DATA = {p.name: p for p in DATA_PARAMS}
PARAMS = (
    _MAIN["models"],
    _MAIN["lrs"],
    Param("seasons", "string", "2015-2023", "seasons to predict, each from the seasons before it: A-B or a comma list"),
    Param(
        "choose_until",
        "int",
        2019,
        "the nested choice: pairs chosen on the predicted seasons up to this one, scored on the later ones",
        season,
    ),
    *sweep_step.GRID_NUMBERS,
    *(_DATA[name] for name in ("data", "league", "first_season", "seed")),
    *(_MAIN[name] for name in ("prefix", "jobs", "env_manager", "backend", "backend_config", "force")),
)
PAIR_ENTRY = "backtest_pair"  # the entry_point tag of a pair's run (logged by this step, not an entry point)
SEASON_RUNS_FILE = "season_runs.json"
DATA_OF_RUN = tuple(_DATA[name] for name in ("data", "league", "seed"))
# A season run's params that its pair's run does not log: this machine's, and those of one season.
SEASON_RUN_ONLY = ("threads", "features_uri", "val_season", "test_season", "last_season")


def plan(client, values: dict, raw: dict, splits: list[dataset.Seasons], identity: dict, threads: int) -> list[Job]:
    """Return a train job per pair and season, each in experiment <prefix>_backtest_<model>; the ones a
    FINISHED run can stand for are marked reused."""
    jobs = []
    for model, grouped in groupby(sweep.grid(values["models"], values["lrs"]), lambda pair: pair.model):
        pairs = list(grouped)
        name = f"{values['prefix']}_backtest_{model}"
        lrs = [pair.lr for pair in pairs]
        exp_id = sweep_step.experiment_id(
            client, name, describe.backtest_model_description(model, lrs, sweep.canonical(raw["epochs"]))
        )
        for pair, split in product(pairs, splits):
            params = {
                "model": pair.model,
                "lr": pair.lr,
                **sweep_step.canonical_params(sweep_step.GRID_NUMBERS, raw),
                "threads": str(threads),
                "features_uri": "",
                **sweep_step.canonical_params(DATA_OF_RUN, raw),
                "first_season": str(split.first),
                "val_season": str(split.val),
                "test_season": str(split.test),
                "last_season": str(split.last),
            }
            key = claim_key({"entry": "train", **sweep_step.cache_identity(params), **identity})
            jobs.append(Job(backtest.SeasonPair(pair.model, pair.lr, split.test), name, exp_id, params, key=key))
    return sweep_step.mark_reused(client, jobs, identity, values["force"])


def log_features(files, splits: list[dataset.Seasons], seasons: set[int], folder: Path) -> None:
    """Log each split's features (the ingest step's folder) under features/<season>/ of this run, for
    the season runs to train from on any backend."""
    for split in (s for s in splits if s.test in seasons):
        dataset.write(dataset.build(files, split), folder / str(split.test))
        mlflow.log_artifacts(str(folder / str(split.test)), f"{names.FEATURES_DIR}/{split.test}")


def predictions_of(run_id: str, folder: Path) -> pd.DataFrame:
    """Download the run's predictions.csv into `folder`/<run id> and return it."""
    local = mlflow.artifacts.download_artifacts(
        run_id=run_id, artifact_path=names.PREDICTIONS_FILE, dst_path=str(folder / run_id)
    )
    return pd.read_csv(local)


def pair_run(
    client, jobs: list[Job], identity: dict, parent: str, force: bool, predictions: pd.DataFrame, by_season, overall
) -> tuple[str, bool]:
    """Reuse the pair's run when a FINISHED one aggregates the very same season runs; otherwise log it
    here (`by_season`: season_scores, `overall`: overall_scores, every predicted game) and make it the
    parent of the season runs this invocation trained. Return (its run id, whether it was reused)."""
    first = jobs[0]
    season_runs = ",".join(job.run_id for job in jobs)
    found = client.search_runs(
        [first.experiment_id],
        f"tags.`{names.TAG_SEASON_RUNS}` = '{season_runs}' and tags.`{names.TAG_ENTRY_POINT}` = '{PAIR_ENTRY}' "
        "and attributes.status = 'FINISHED'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    if found and not force:
        return found[0].info.run_id, True
    tags = {
        names.TAG_PARENT_RUN: parent,
        names.TAG_ENTRY_POINT: PAIR_ENTRY,
        names.TAG_SEASON_RUNS: season_runs,
        names.TAG_SWEEP: parent,
        **{k: v for k, v in identity.items() if v is not None},
        **liveness_tags(),  # a pair run left RUNNING by a process that died is ended by the next invocation
    }
    run = client.create_run(first.experiment_id, run_name=sweep.Pair(first.pair.model, first.pair.lr).name, tags=tags)
    run_id = run.info.run_id
    try:
        params = {k: v for k, v in first.params.items() if k not in SEASON_RUN_ONLY}
        params["seasons"] = ",".join(str(job.pair.season) for job in jobs)
        now = int(time.time() * 1000)
        metrics = [
            Metric(key, float(row[key]), now, int(row[names.SEASON]))
            for _, row in by_season.iterrows()
            for key in (names.SEASON_BRIER, names.SEASON_BASELINE_BRIER, names.SEASON_GAMES)
        ]
        metrics += [Metric(key, float(value), now, 0) for key, value in overall.items()]
        client.log_batch(
            run_id, metrics=metrics, params=[RunParam(k, str(v)) for k, v in params.items()], synchronous=True
        )
        client.log_text(run_id, predictions.to_csv(index=False), names.PREDICTIONS_FILE)
        for job in jobs:
            if not job.reused:
                client.log_batch(job.run_id, tags=[RunTag(names.TAG_PARENT_RUN, run_id)])
    except BaseException as err:
        end_run(client, run_id, Status.KILLED if isinstance(err, KeyboardInterrupt) else Status.FAILED)
        raise
    end_run(client, run_id, Status.FINISHED)
    return run_id, False


def report(client, values: dict, jobs: list[Job], identity: dict, run_id: str, folder: Path) -> None:
    """Write each pair's run, the ranking, how sure, the nested choice and the chart in `folder`, log
    them under backtest/, and print the ranking, how sure, the nested choice, and last the best pair
    with its run (the line for scripts)."""
    rows, predictions, scores = [], {}, {}
    downloads = folder.parent / "downloads"
    # plan() lists each pair's season runs one after another
    for pair, grouped in groupby(jobs, lambda job: sweep.Pair(job.pair.model, job.pair.lr)):
        pair_jobs = list(grouped)
        row = {"model": pair.model, "lr": pair.lr}
        if any(job.status != Status.FINISHED for job in pair_jobs):
            rows.append({**row, "status": Status.FAILED, "run_id": ""})
            continue
        frame = pd.concat([predictions_of(job.run_id, downloads) for job in pair_jobs], ignore_index=True)
        by_season, overall = backtest.season_scores(frame), backtest.overall_scores(frame)
        predictions[pair.name], scores[pair.name] = frame, by_season
        pair_id, reused = pair_run(client, pair_jobs, identity, run_id, values["force"], frame, by_season, overall)
        seasons = dict(zip(by_season[names.SEASON], by_season[names.SEASON_BRIER], strict=True))
        rows.append({**row, **overall, **seasons, "status": Status.FINISHED, "run_id": pair_id})
        print(f"  {pair.name}: {'reused' if reused else 'logged'} pair run {pair_id}", flush=True)
    table = backtest.ranking(rows)
    markdown = tables.markdown(table)
    folder.mkdir(parents=True, exist_ok=True)
    table.to_csv(folder / names.RANKING_CSV, index=False)
    (folder / names.RANKING_MD).write_text(markdown)
    if scores:
        plots.brier_by_season_figure(scores, next(iter(scores.values()))).savefig(folder / names.SEASON_CHART, dpi=100)
    ranked = backtest.scored(table)
    summary: dict = {"backtest_run_id": run_id, "best": None}
    if not ranked.empty:
        best = ranked.iloc[0].to_dict()
        runner_up = ranked.iloc[1].to_dict() if len(ranked) > 1 else None
        summary["best"] = best
        summary["how_sure"] = tables.how_sure(
            best,
            runner_up,
            predictions[sweep.Pair(best["model"], best["lr"]).name],
            predictions[sweep.Pair(runner_up["model"], runner_up["lr"]).name] if runner_up else None,
        )
        nested = backtest.nested_choice(predictions, values["choose_until"])
        summary["nested"] = backtest.nested_text(nested, values["choose_until"])
        summary["best_text"] = backtest.best_text(best)
    (folder / names.BEST_FILE).write_text(json.dumps(summary, indent=1, default=lambda v: v.item()))  # NumPy numbers
    mlflow.log_artifacts(str(folder), names.BACKTEST_DIR)
    print(markdown)
    if summary["best"] is None:
        print("no pair predicted every season")
        return
    print(f"how sure: {summary['how_sure']}")
    print(f"nested: {summary['nested']}")
    print(f"best: {summary['best_text']} -> pair run {summary['best']['run_id']}")


@entry_point
def main(argv=None):
    """Run the backtest entry point: parse its params, train and rank the pairs (see the module docstring)."""
    values, raw = parse("backtest", __doc__.splitlines()[0], PARAMS, argv)
    pairs = sweep.grid(values["models"], values["lrs"])
    wanted = backtest.parse_seasons(values["seasons"])
    backend = sweep_step.checked_backend(values)
    with tempfile.TemporaryDirectory() as tmp:
        files, synthetic_data = dataset.read_inputs(values["data"], values["league"], values["seed"], Path(tmp) / "raw")
    games, _, manifest = dataset.assemble(files, synthetic_data)
    splits, skipped = backtest.season_splits(wanted, games[names.SEASON].unique().tolist(), values["first_season"])
    client = mlflow.MlflowClient()
    models = list(dict.fromkeys(p.model for p in pairs))
    home = sweep_step.experiment_id(
        client, f"{values['prefix']}_backtest", describe.backtest_description(values["prefix"], models)
    )
    where = {} if os.environ.get("MLFLOW_RUN_ID") else {"experiment_id": home, "run_name": "backtest"}
    with start_run("backtest", raw, **where) as run, tempfile.TemporaryDirectory() as tmp:
        run_id = run.info.run_id
        identity = code_identity()
        identity[names.TAG_DATA_DIGEST] = manifest["digest"]
        jobs = plan(client, values, raw, splits, identity, sweep_step.threads_of(backend, values["jobs"]))
        liveness = Liveness(client)
        end_orphans(client, [home, *{job.experiment_id for job in jobs}], liveness, f"backtest {run_id}")
        todo = [job for job in jobs if not job.reused]
        print(
            f"backtest {run_id}: {len(pairs)} pairs x {len(splits)} seasons "
            f"({', '.join(f'{s.test} (val {s.val})' for s in splits)}"
            f"{'; no tournament: ' + ', '.join(map(str, skipped)) if skipped else ''}) = {len(jobs)} train runs, "
            f"{len(jobs) - len(todo)} reused, {len(todo)} to train (jobs={values['jobs']}, "
            f"env_manager={values['env_manager']}{sweep_step.on_backend(backend)})",
            flush=True,
        )
        for job in todo:
            job.params["features_uri"] = f"runs:/{run_id}/{names.FEATURES_DIR}/{job.pair.season}"
        log_features(files, splits, {job.pair.season for job in todo}, Path(tmp) / names.FEATURES_DIR)
        launcher = Launcher(
            client,
            backend,
            values["jobs"],
            run_id,
            lambda job: sweep_step.find_reusable(client, job.experiment_id, "train", job.params, identity),
            None if values["force"] else Claims(client, run_id, liveness),
            distinct=("model", "lr", "test_season"),
        )
        sweep_step.run_jobs(
            launcher, jobs, "season_runs", SEASON_RUNS_FILE, lambda job: {**job.record(), "season": job.pair.season}
        )
        report(client, values, jobs, identity, run_id, Path(tmp) / names.BACKTEST_DIR)
        failed = [job.pair.name for job in jobs if job.status != Status.FINISHED]
        if failed:
            raise UserError(
                f"{len(failed)} of {len(jobs)} season runs failed: {', '.join(failed)}; "
                "run the backtest again to retry only those"
            )


if __name__ == "__main__":
    run_as_script(main)
