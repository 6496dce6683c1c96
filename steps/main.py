"""Main: the article's grid (models x learning rates), each pair a packaged `mlflow.run` of `train`.

Its params are PARAMS below (and MLproject); what it logs, and which pairs it reuses, the README's
table "What each run records" and the paragraph after it say. One ingest run (reused when valid)
feeds every pair through `runs:/<id>/features`. The report (steps.report) follows; the process
exits non-zero naming any failed pair.

    mlflow run . --env-manager local
    mlflow run . -P models=small,medium -P lrs=0.001,0.01 -P epochs=10 -P jobs=2 --env-manager local
    mlflow run . -P seeds=3 -P epochs=5 -P jobs=1 --env-manager local
"""

from __future__ import annotations

import contextlib
import logging
import os
import shlex
from itertools import groupby

import mlflow

from madness import describe, names, sweep
from madness.backends import BACKENDS, LOCAL, Backend, backend_of, usable_cores
from madness.cli import DATA_PARAMS, SEEDS, Param, boolean, non_negative, not_empty, one_of, parse, positive
from madness.errors import UserError
from madness.limits import check_work
from madness.names import Status
from steps import _lifecycle
from steps import report as report_step
from steps._coordination import Claims, Liveness, claim_key, end_orphans
from steps._data import seasons_of
from steps._entry import code_identity, entry_point, run_as_script, start_run
from steps._experiments import experiment_id, label_experiment
from steps._image import check_pods_reach_store, with_image
from steps._launcher import POLL_SECONDS, Job, Launcher, run_child
from steps._lifecycle import single_attempt
from steps._never_started import project_experiments
from steps._stored import ingest_run_problem, train_run_problem

PARAMS = (
    Param("models", "string", "small,medium,large", "comma-separated model sizes"),
    Param("lrs", "string", "0.001,0.01,0.1", "comma-separated learning rates"),
    Param("epochs", "int", 100, "training epochs per pair (> 0)", positive),
    Param("batch_size", "int", 32, "mini-batch size (> 0)", positive),
    SEEDS,
    *DATA_PARAMS,
    Param("prefix", "string", "fabric_madness", "experiment name prefix", not_empty),
    Param("jobs", "int", 0, "pairs trained at once (0 = one per usable core; 1 = one at a time)", non_negative),
    Param(
        "env_manager",
        "string",
        "local",
        "environment of every child run: local, virtualenv, uv or conda",
        one_of(*names.ENV_MANAGERS),
    ),
    Param("backend", "string", LOCAL, "MLflow backend of every child run: local or kubernetes", one_of(*BACKENDS)),
    Param("backend_config", "string", "", "the backend's configuration, a JSON file (kubernetes only)"),
    Param("force", "string", "false", "true: rerun every pair and the ingest", boolean),
    Param("filter", "string", report_step.DEFAULT_FILTER, "MLflow search filter for the report"),
    Param(
        "register", "string", "false", "true: register the pairs passing the filter, alias the best 'champion'", boolean
    ),
)
GRID_NUMBERS = tuple(p for p in PARAMS if p.name in ("epochs", "batch_size", SEEDS.name))


def as_logged(params: dict[str, str]) -> dict[str, str]:
    """Return the params as `mlflow.run` stores them: shell-quoted strings ('' for an empty one)."""
    return {k: shlex.quote(str(v)) for k, v in params.items()}


def cache_identity(params: dict) -> dict[str, str]:
    """Return the params that decide a pair's results, as stored."""
    return {k: v for k, v in as_logged(params).items() if k not in sweep.IGNORED_IN_CACHE}


RUN_PROBLEM = {"train": train_run_problem, "ingest": ingest_run_problem}
_reported_not_whole: set[str] = set()  # runs already named as not whole by this process


def finished_runs(exp_ids: list[str], entry: str, identity: dict[str, str | None]) -> list:
    """Return the FINISHED runs of `entry` at this commit in these experiments, latest first (none outside git): one
    search (mlflow.search_runs reads every page, up to its 100,000 runs) for the whole grid rather than one per pair."""
    if identity.get(names.TAG_COMMIT) is None:
        return []
    return mlflow.search_runs(
        sorted(set(exp_ids)),
        f"tags.`{names.TAG_COMMIT}` = '{identity[names.TAG_COMMIT]}' and tags.`{names.TAG_ENTRY_POINT}` = '{entry}' and attributes.status = 'FINISHED'",
        order_by=["attributes.start_time DESC"],
        output_format="list",
    )


def find_reusable(
    client, exp_id: str, entry: str, params: dict[str, str], identity: dict[str, str | None], candidates=None
) -> str | None:
    """Return the latest FINISHED run that can stand for this one (madness.sweep.is_reusable) and still holds
    its files; a run whose files are gone is named and passed over, so the pair trains again.
    `candidates`: finished_runs() of this experiment, when the caller searched already."""
    if candidates is None:
        candidates = finished_runs([exp_id], entry, identity)
    for run in (run for run in candidates if run.info.experiment_id == exp_id):
        if not sweep.is_reusable(run.info.status, run.data.params, run.data.tags, as_logged(params), identity):
            continue
        problem = RUN_PROBLEM[entry](client, run.info.run_id, run)
        if problem is None:
            return run.info.run_id
        if run.info.run_id not in _reported_not_whole:
            _reported_not_whole.add(run.info.run_id)
            print(f"  {run.info.run_name}: not reusing run {run.info.run_id}: {problem}", flush=True)
    return None


def canonical_params(params: tuple[Param, ...], raw: dict[str, str]) -> dict[str, str]:
    """Return the params as the child runs get them: numbers in one spelling (madness.sweep.canonical)."""
    return {p.name: sweep.canonical(raw[p.name]) if p.type in ("int", "float") else raw[p.name] for p in params}


def ensure_ingest(
    client, raw: dict, exp_id: str, identity: dict, backend: Backend, sweep_run_id: str, claims: Claims | None
) -> str:
    """Return the id of the ingest run the sweep trains on: unless forced, a reusable one (once a sweep ahead ingesting
    the same data is done), else a new one run as a child of the sweep; the claim on it is released. Raise UserError
    when the new one could not start or failed."""
    params = canonical_params(DATA_PARAMS, raw)
    key = claim_key({"entry": "ingest", **as_logged(params), **identity})
    if claims is not None:  # not forced: reuse, or wait for a sweep already ingesting the same data
        shown = None
        while (reused := find_reusable(client, exp_id, "ingest", params, identity)) is None:
            holder = claims.holder_ahead(exp_id, key)
            if holder is None:
                break
            if holder != shown:
                print(f"ingest: waiting for sweep {holder}, which is ingesting the same data", flush=True)
                shown = holder
            _lifecycle.wait(POLL_SECONDS)
        if reused:
            claims.release(exp_id, key)
            print(f"ingest: reusing run {reused}", flush=True)
            return reused
    try:
        print("ingest: running", flush=True)
        run_id, status, error, _ = run_child(client, sweep_run_id, "ingest", params, exp_id, "ingest", backend, key)
        _lifecycle.check_stop()
        if error:
            raise UserError(f"the ingest run could not start: {error}")
        if status != Status.FINISHED:
            raise UserError(f"the ingest run {run_id} failed; see its output above")
        return run_id
    finally:
        if claims is not None:
            claims.release(exp_id, key)


def run_jobs(launcher: Launcher, jobs: list[Job], counted: str, file: str, record=Job.record) -> None:
    """Run the jobs not reused, then log `file` (each job's `record`: its run and status; after the store
    failed, tried once, briefly) and the metrics <counted>_trained and <counted>_reused."""
    try:
        launcher.run_all([job for job in jobs if not job.reused], total=len(jobs))
    finally:
        records = [record(job) for job in jobs]
        if not launcher.store_failed:
            mlflow.log_dict(records, file)
        else:  # the store is still away; the error that follows names it
            with single_attempt(), contextlib.suppress(Exception):
                mlflow.log_dict(records, file)
    reused = sum(job.reused for job in jobs)
    mlflow.log_metrics({f"{counted}_trained": len(jobs) - reused, f"{counted}_reused": reused})


def threads_of(backend: Backend, jobs: int) -> int:
    """Return each pair's TensorFlow threads: on this machine a fair share of its cores; elsewhere 0, so
    that each child takes what its own machine gives it (a pod: its CPU limit)."""
    return sweep.threads_per_job(jobs) if backend.name == LOCAL else 0


def on_backend(backend: Backend) -> str:
    """Return ', backend=<name>' for the sweep's line, or '' for the local backend."""
    return "" if backend.name == LOCAL else f", backend={backend.name}"


def plan(client, values: dict, raw: dict, features_uri: str, identity: dict, threads: int) -> list[Job]:
    """Return a train job per pair of the grid, in experiment <prefix>_<model> (made when missing); mark reused the
    jobs a finished, whole run can stand for."""
    jobs = []
    for model, pairs in groupby(sweep.grid(values["models"], values["lrs"]), lambda pair: pair.model):
        name = f"{values['prefix']}_{model}"
        exp_id = experiment_id(client, name, describe.model_description(model))
        for pair in pairs:
            params = {
                "model": pair.model,
                "lr": pair.lr,
                **canonical_params(GRID_NUMBERS, raw),
                "threads": str(threads),
                "features_uri": features_uri,
                **canonical_params(DATA_PARAMS, raw),
            }
            key = claim_key({"entry": "train", **cache_identity(params), **identity})
            jobs.append(Job(pair, name, exp_id, params, key=key))
    return mark_reused(client, jobs, identity, values["force"])


def mark_reused(client, jobs: list[Job], identity: dict, force: bool) -> list[Job]:
    """Mark reused each job a finished, whole run can stand for (none with `force`, or outside git);
    return the jobs."""
    if force:
        return jobs
    candidates = finished_runs([job.experiment_id for job in jobs], "train", identity)
    for job in jobs:
        job.run_id = find_reusable(client, job.experiment_id, "train", job.params, identity, candidates)
        if job.run_id:
            job.reused, job.status = True, Status.FINISHED
    return jobs


def checked_backend(values: dict) -> Backend:
    """Settle `jobs` (0: the usable cores), refuse more work than the machine holds, and return the
    backend; for Kubernetes with its image, once the tracking store is one its pods can reach (the
    image is built first: it serves the next attempt too)."""
    values["jobs"] = values["jobs"] or usable_cores()
    check_work(
        values["epochs"], values["seeds"], values["batch_size"], values["jobs"] if values["backend"] == LOCAL else 1
    )
    backend = backend_of(values["backend"], values["backend_config"], values["env_manager"])
    if backend.name != LOCAL:
        backend = with_image(backend)
        check_pods_reach_store()
    return backend


@entry_point
def main(argv=None):
    """Run the main entry point: parse its params, ingest, train the grid, report (see the module docstring)."""
    values, raw = parse("main", __doc__.splitlines()[0], PARAMS, argv)
    # MLflow announces each child's scratch folder and command at INFO: the sweep's own line per pair says it.
    logging.getLogger("mlflow.projects").setLevel(logging.WARNING)
    sweep.grid(values["models"], values["lrs"])  # a bad, empty or repeated value stops here
    backend = checked_backend(values)
    if not seasons_of(values).has_test:
        raise UserError(
            f"a sweep compares its pairs by their Brier on the test seasons: test_season must be at most "
            f"last_season ({values['last_season']}), got {values['test_season']}; to train a model for the coming "
            "tournament without test seasons, run the train entry point"
        )
    client = mlflow.MlflowClient()
    description = describe.sweep_description(values["prefix"])
    sweep_exp = experiment_id(client, values["prefix"], description)
    report_step.search_filtered(values["filter"], [sweep_exp], max_results=1)  # a bad filter stops here, before any run
    # Under `mlflow run .` the sweep run already exists (MLFLOW_RUN_ID); on its own it goes in <prefix>.
    where = {} if os.environ.get("MLFLOW_RUN_ID") else {"experiment_id": sweep_exp, "run_name": "sweep"}
    with start_run("main", raw, **where) as sweep_run:
        sweep_id = sweep_run.info.run_id
        if sweep_run.info.experiment_id != sweep_exp:  # `mlflow run` put it elsewhere (--experiment-name, or Default)
            label_experiment(client, client.get_experiment(sweep_run.info.experiment_id), description=None)
        identity = code_identity()
        liveness = Liveness(client)
        claims = None if values["force"] else Claims(client, sweep_id, liveness)
        ingest_id = ensure_ingest(client, raw, sweep_exp, identity, backend, sweep_id, claims)
        identity[names.TAG_DATA_DIGEST] = client.get_run(ingest_id).data.tags.get(names.TAG_DATA_DIGEST)
        jobs = plan(
            client,
            values,
            raw,
            f"runs:/{ingest_id}/{names.FEATURES_DIR}",
            identity,
            threads_of(backend, values["jobs"]),
        )
        watched = [sweep_exp, *(job.experiment_id for job in jobs), *project_experiments(client, values["prefix"])]
        end_orphans(client, watched, liveness, f"sweep {sweep_id}")
        todo = [job for job in jobs if not job.reused]
        print(
            f"sweep {sweep_id}: {len(jobs)} pairs, {len(jobs) - len(todo)} reused, {len(todo)} to train "
            f"(jobs={values['jobs']}, env_manager={values['env_manager']}{on_backend(backend)})",
            flush=True,
        )
        launcher = Launcher(
            client,
            backend,
            values["jobs"],
            sweep_id,
            lambda job: find_reusable(client, job.experiment_id, "train", job.params, identity),
            claims,
        )
        run_jobs(launcher, jobs, "pairs", names.PAIRS_FILE)
        report_step.report(sweep_id, values["filter"], values["register"])
        failed = [job.pair.name for job in jobs if job.status != Status.FINISHED]
        if failed:
            raise UserError(
                f"{len(failed)} of {len(jobs)} pairs failed: {', '.join(failed)}; run the sweep again to retry only those"
            )


if __name__ == "__main__":
    run_as_script(main)
