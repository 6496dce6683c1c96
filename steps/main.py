"""Main: the article's grid (models x learning rates), each pair a packaged `mlflow.run` of `train`.

Inputs: `models`, `lrs` (comma-separated), `epochs`, `batch_size`, the data parameters, `prefix`
(experiments `<prefix>` for the sweep and its ingest run, `<prefix>_<model>` per model), `jobs`
(pairs at once; each gets its share of the cores), `env_manager` (passed to every child run:
local, virtualenv, uv or conda), `force` (rerun everything), `filter` and `register` (see report).
Flow: one ingest run (reused when valid) feeds every pair through `runs:/<id>/features`; a pair
whose FINISHED run has the same git commit and working-tree state, the same params and the same
data digest is reused, not rerun. Outputs: `pairs.json` (each pair's run) and the report (`report/`)
on the sweep run; the process exits non-zero naming any failed pair.

    mlflow run . --env-manager local
    mlflow run . -P models=small,medium -P lrs=0.001,0.01 -P epochs=10 -P jobs=2 --env-manager local
"""

from __future__ import annotations

import os
import shlex
import subprocess
import time
from dataclasses import dataclass, field

import mlflow
import mlflow.projects
from mlflow.exceptions import MlflowException

from madness import names as n
from madness import sweep as S
from madness.cli import DATA_PARAMS, Param, boolean, not_empty, one_of, parse, positive
from madness.errors import UserError
from steps import report as report_step
from steps._common import PROJECT_ROOT, entry_point, git_state, seasons_of, start_run

PARAMS = (
    Param("models", "string", "small,medium,large", "comma-separated model sizes"),
    Param("lrs", "string", "0.001,0.01,0.1", "comma-separated learning rates"),
    Param("epochs", "int", 100, "training epochs per pair (> 0)", positive),
    Param("batch_size", "int", 32, "mini-batch size (> 0)", positive),
    *DATA_PARAMS,
    Param("prefix", "string", "fabric_madness", "experiment name prefix", not_empty),
    Param("jobs", "int", 1, "pairs trained at once (> 0)", positive),
    Param("env_manager", "string", "local", "environment of every child run: local, virtualenv, uv or conda", one_of(*S.ENV_MANAGERS)),
    Param("force", "string", "false", "true: rerun every pair and the ingest", boolean),
    Param("filter", "string", report_step.DEFAULT_FILTER, "MLflow search filter for the report"),
    Param("register", "string", "false", "true: register the models, alias the best 'champion'", boolean),
)
DATA_NAMES = tuple(p.name for p in DATA_PARAMS)
POLL_SECONDS = 1.0
QUIET_SECONDS = 30.0


def stored(params: dict[str, str]) -> dict[str, str]:
    """Params as `mlflow.run` stores them: shell-quoted strings ('' for an empty one)."""
    return {k: shlex.quote(str(v)) for k, v in params.items()}


def experiment_id(client, name: str) -> str:
    """Fetch the experiment, or create it: as the article does, one per model."""
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        if experiment.lifecycle_stage == "deleted":
            raise UserError(f"experiment {name!r} is deleted; restore it or choose another prefix")
        return experiment.experiment_id
    return client.create_experiment(name)


def git_commit() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=PROJECT_ROOT, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def find_reusable(client, exp_id: str, entry: str, params: dict[str, str], identity: dict[str, str | None]) -> str | None:
    if identity.get(n.TAG_COMMIT) is None:
        return None
    candidates = client.search_runs(
        [exp_id],
        f"tags.`{n.TAG_COMMIT}` = '{identity[n.TAG_COMMIT]}' and tags.`{n.TAG_ENTRY_POINT}` = '{entry}' and attributes.status = 'FINISHED'",
        order_by=["attributes.start_time DESC"],
    )
    for run in candidates:
        if S.is_reusable(run.info.status, run.data.params, run.data.tags, stored(params), identity):
            return run.info.run_id
    return None


class LaunchError(Exception):
    def __init__(self, message: str, run_id: str | None):
        super().__init__(message)
        self.message, self.run_id = message, run_id


def launch_child(client, sweep_run_id: str, entry: str, params: dict, exp_id: str, run_name: str, env_manager: str, known: set):
    """`mlflow.run` the entry point asynchronously. MLflow creates the child run before it builds the
    environment; when that fails (no conda, a pip error) the run would stay RUNNING: end it FAILED
    (KILLED on an interrupt) and raise LaunchError naming it."""
    since_ms = int(time.time() * 1000)
    try:
        return mlflow.projects.run(str(PROJECT_ROOT), entry_point=entry, parameters=params, experiment_id=exp_id,
                                   run_name=run_name, env_manager=env_manager, synchronous=False)
    except BaseException as err:
        orphans = [run.info.run_id for run in client.search_runs(
            [exp_id], f"tags.`mlflow.parentRunId` = '{sweep_run_id}' and tags.`mlflow.project.entryPoint` = '{entry}' "
                      f"and attributes.status = 'RUNNING' and attributes.start_time >= {since_ms}") if run.info.run_id not in known]
        for run_id in orphans:
            client.set_terminated(run_id, "KILLED" if isinstance(err, KeyboardInterrupt) else "FAILED")
            client.set_tag(run_id, n.TAG_SWEEP, sweep_run_id)
            client.set_tag(run_id, "mlflow.runName", run_name)  # MLflow names the run only once it is launched
        if not isinstance(err, (MlflowException, OSError, subprocess.CalledProcessError)):
            raise
        text = str(err).strip()
        raise LaunchError(text.splitlines()[0] if text else type(err).__name__, orphans[0] if orphans else None) from None


@dataclass
class Job:
    pair: S.Pair
    experiment: str
    experiment_id: str
    params: dict
    run_id: str | None = None
    reused: bool = False
    status: str = "PENDING"
    submitted: object = None
    started: float = 0.0
    duration: float = 0.0
    error: str = ""

    def record(self) -> dict:
        return {"model": self.pair.model, "lr": self.pair.lr, "run_id": self.run_id, "experiment": self.experiment,
                "experiment_id": self.experiment_id, "reused": self.reused, "status": self.status, "error": self.error}


@dataclass
class Launcher:
    """Runs jobs through `mlflow.run`, `jobs` at a time, and never leaves a child RUNNING."""

    client: object
    env_manager: str
    jobs: int
    sweep_run_id: str
    running: list[Job] = field(default_factory=list)
    durations: list[float] = field(default_factory=list)

    def launch(self, job: Job) -> None:
        job.started = time.perf_counter()
        try:
            job.submitted = launch_child(self.client, self.sweep_run_id, "train", job.params, job.experiment_id, job.pair.name,
                                         self.env_manager, known={j.run_id for j in self.running})
        except LaunchError as err:
            job.status, job.error, job.run_id = "FAILED", err.message, err.run_id
            return
        job.run_id = job.submitted.run_id
        job.status = "RUNNING"
        self.client.set_tag(job.run_id, n.TAG_SWEEP, self.sweep_run_id)
        self.running.append(job)

    def reap(self) -> list[Job]:
        finished = [job for job in self.running if job.submitted.command_proc.poll() is not None]
        for job in finished:
            self.running.remove(job)
            job.duration = time.perf_counter() - job.started
            code = job.submitted.command_proc.returncode
            job.status = self.settle(job.run_id, "FINISHED" if code == 0 else "FAILED")
            if job.status == "FINISHED":
                self.durations.append(job.duration)
        return finished

    def settle(self, run_id: str, status: str) -> str:
        """A child that died before ending its run would leave it RUNNING: end it here."""
        current = self.client.get_run(run_id).info.status
        if current == "RUNNING":
            self.client.set_terminated(run_id, status)
            return status
        return current

    def cancel_all(self) -> None:
        for job in self.running:
            job.submitted.cancel()
            job.status = self.settle(job.run_id, "KILLED")
        self.running.clear()

    def run_all(self, queue: list[Job], total: int, done: int) -> None:
        last_print, shown = 0.0, None
        try:
            while queue or self.running:
                while queue and len(self.running) < self.jobs:
                    job = queue.pop(0)
                    self.launch(job)
                    if job.status == "FAILED":  # could not even start (e.g. its environment failed to build)
                        done += 1
                        print(f"  {job.pair.name}: FAILED to start: {job.error}", flush=True)
                for job in self.reap():
                    done += 1
                    print(f"  {job.pair.name}: {job.status} in {S.format_seconds(job.duration)} (run {job.run_id})", flush=True)
                line = S.progress_line(done, total, [j.pair.name for j in self.running], S.eta_seconds(self.durations, len(queue) + len(self.running), self.jobs))
                if line != shown or time.monotonic() - last_print > QUIET_SECONDS:
                    print(line, flush=True)
                    shown, last_print = line, time.monotonic()
                if self.running:
                    time.sleep(POLL_SECONDS)
        except BaseException:
            self.cancel_all()
            raise


def ensure_ingest(client, values: dict, raw: dict, exp_id: str, identity: dict, force: bool, env_manager: str, sweep_run_id: str) -> str:
    params = {k: raw[k] for k in DATA_NAMES}
    if not force:
        reused = find_reusable(client, exp_id, "ingest", params, identity)
        if reused:
            print(f"ingest: reusing run {reused}", flush=True)
            return reused
    print("ingest: running", flush=True)
    try:
        submitted = launch_child(client, sweep_run_id, "ingest", params, exp_id, "ingest", env_manager, known=set())
    except LaunchError as err:
        raise UserError(f"the ingest run could not start: {err.message}") from None
    client.set_tag(submitted.run_id, n.TAG_SWEEP, sweep_run_id)
    try:
        ok = submitted.wait()
    except BaseException:
        submitted.cancel()
        Launcher(client, env_manager, 1, sweep_run_id).settle(submitted.run_id, "KILLED")
        raise
    if not ok:
        Launcher(client, env_manager, 1, sweep_run_id).settle(submitted.run_id, "FAILED")
        raise UserError(f"the ingest run {submitted.run_id} failed; see its output above")
    return submitted.run_id


def plan(client, values: dict, raw: dict, features_uri: str, identity: dict, threads: int) -> list[Job]:
    jobs = []
    for pair in S.grid(values["models"], values["lrs"]):
        name = f"{values['prefix']}_{pair.model}"
        params = {"model": pair.model, "lr": pair.lr, "epochs": raw["epochs"], "batch_size": raw["batch_size"],
                  "threads": str(threads), "features_uri": features_uri, **{k: raw[k] for k in DATA_NAMES}}
        job = Job(pair, name, experiment_id(client, name), params)
        if not values["force"]:
            job.run_id = find_reusable(client, job.experiment_id, "train", params, identity)
            if job.run_id:
                job.reused, job.status = True, "FINISHED"
        jobs.append(job)
    return jobs


@entry_point
def main(argv=None):
    values, raw = parse("main", __doc__.splitlines()[0], PARAMS, argv)
    S.grid(values["models"], values["lrs"])  # an empty or repeated list stops here
    seasons_of(values)
    client = mlflow.MlflowClient()
    sweep_exp = experiment_id(client, values["prefix"])
    report_step.check_filter(values["filter"], sweep_exp)
    # Under `mlflow run .` the sweep run already exists (MLFLOW_RUN_ID); on its own it goes in <prefix>.
    where = {} if os.environ.get("MLFLOW_RUN_ID") else {"experiment_id": sweep_exp, "run_name": "sweep"}
    with start_run("main", raw, **where) as sweep:
        sweep_id = sweep.info.run_id
        identity = {n.TAG_COMMIT: git_commit(), **git_state(PROJECT_ROOT)}
        identity.setdefault(n.TAG_STATE, None)
        identity.pop(n.TAG_DIRTY, None)
        ingest_id = ensure_ingest(client, values, raw, sweep_exp, identity, values["force"], values["env_manager"], sweep_id)
        digest = client.get_run(ingest_id).data.tags.get(n.TAG_DATA_DIGEST)
        jobs = plan(client, values, raw, f"runs:/{ingest_id}/{n.FEATURES_DIR}", {**identity, n.TAG_DATA_DIGEST: digest}, S.threads_per_job(values["jobs"]))
        todo = [job for job in jobs if not job.reused]
        print(f"sweep {sweep_id}: {len(jobs)} pairs, {len(jobs) - len(todo)} reused, {len(todo)} to train "
              f"(jobs={values['jobs']}, env_manager={values['env_manager']})", flush=True)
        launcher = Launcher(client, values["env_manager"], values["jobs"], sweep_id)
        try:
            launcher.run_all(list(todo), total=len(jobs), done=len(jobs) - len(todo))
        finally:
            mlflow.log_dict([job.record() for job in jobs], n.PAIRS_FILE)
        mlflow.log_metrics({"pairs_trained": len(todo), "pairs_reused": len(jobs) - len(todo)})
        report_step.report(sweep_id, values["filter"], values["register"])
        failed = [job.pair.name for job in jobs if job.status != "FINISHED"]
        if failed:
            raise UserError(f"{len(failed)} of {len(jobs)} pairs failed: {', '.join(failed)}; run the sweep again to retry only those")


if __name__ == "__main__":
    main()
