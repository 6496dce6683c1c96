"""Main: the article's grid (models x learning rates), each pair a packaged `mlflow.run` of `train`.

Inputs: `models`, `lrs` (comma-separated), `epochs`, `batch_size`, `seeds` (networks per pair,
averaged into its model; see train), the data parameters, `prefix`
(experiments `<prefix>` for the sweep and its ingest run, `<prefix>_<model>` per model), `jobs`
(pairs at once; each gets its share of the cores), `env_manager` (passed to every child run:
local, virtualenv, uv or conda), `force` (rerun everything), `filter` and `register` (see report).
Flow: one ingest run (reused when valid) feeds every pair through `runs:/<id>/features`; a pair
whose FINISHED run has the same git commit and working-tree state, the same params and the same
data digest is reused, not rerun. Outputs: `pairs.json` (each pair's run) and the report (`report/`)
on the sweep run; the process exits non-zero naming any failed pair.

    mlflow run . --env-manager local
    mlflow run . -P models=small,medium -P lrs=0.001,0.01 -P epochs=10 -P jobs=2 --env-manager local
    mlflow run . -P seeds=3 -P epochs=5 -P jobs=2 --env-manager local
"""

from __future__ import annotations

import contextlib
import os
import shlex
import subprocess
import time
from dataclasses import dataclass, field

import mlflow
import mlflow.projects
from mlflow.entities import RunTag
from mlflow.exceptions import MlflowException

from madness import coordination, describe, git
from madness import names as n
from madness import sweep as S
from madness.cli import DATA_PARAMS, SEEDS, Param, boolean, not_empty, one_of, parse, positive
from madness.errors import UserError
from steps import report as report_step
from steps._coordination import Claims, Liveness, end_orphans
from steps._data import seasons_of
from steps._entry import PROJECT_ROOT, entry_point, run_as_script, single_attempt, start_run
from steps._failures import store_failure
from steps._stored import ingest_run_problem, train_run_problem

PARAMS = (
    Param("models", "string", "small,medium,large", "comma-separated model sizes"),
    Param("lrs", "string", "0.001,0.01,0.1", "comma-separated learning rates"),
    Param("epochs", "int", 100, "training epochs per pair (> 0)", positive),
    Param("batch_size", "int", 32, "mini-batch size (> 0)", positive),
    SEEDS,
    *DATA_PARAMS,
    Param("prefix", "string", "fabric_madness", "experiment name prefix", not_empty),
    Param("jobs", "int", 1, "pairs trained at once (> 0)", positive),
    Param(
        "env_manager",
        "string",
        "local",
        "environment of every child run: local, virtualenv, uv or conda",
        one_of(*n.ENV_MANAGERS),
    ),
    Param("force", "string", "false", "true: rerun every pair and the ingest", boolean),
    Param("filter", "string", report_step.DEFAULT_FILTER, "MLflow search filter for the report"),
    Param("register", "string", "false", "true: register the models, alias the best 'champion'", boolean),
)
GRID_NUMBERS = tuple(p for p in PARAMS if p.name in ("epochs", "batch_size", SEEDS.name))
POLL_SECONDS = 1.0
REAP_SECONDS = 0.05  # how soon a finished child is noticed: the next pair starts without waiting out a poll
QUIET_SECONDS = 30.0


def stored(params: dict[str, str]) -> dict[str, str]:
    """Params as `mlflow.run` stores them: shell-quoted strings ('' for an empty one)."""
    return {k: shlex.quote(str(v)) for k, v in params.items()}


def label_experiment(client, experiment, description: str | None, attempts: int = 3) -> None:
    """Add the kind and the description (None: the kind only) to an experiment that lacks them; a
    kind or description already there, a user's own included, is kept. Sweeps may add them at once
    (a SQLite store may then refuse a write): a failed write is retried on the experiment read
    again, where the other's tag may already be."""
    for attempt in range(attempts):
        missing = {
            key: value for key, value in describe.training_tags(description).items() if key not in experiment.tags
        }
        try:
            for key, value in missing.items():
                client.set_experiment_tag(experiment.experiment_id, key, value)
            return
        except MlflowException:
            if attempt == attempts - 1:
                raise
            time.sleep(0.5 * (attempt + 1))
            experiment = client.get_experiment(experiment.experiment_id)


def experiment_id(client, name: str, description: str) -> str:
    """Fetch the experiment, or create it: as the article does, one per model. Two sweeps may
    create it at once: the second takes the first's. Either way it is marked a model-training
    experiment ("Machine learning" in MLflow's UI) with `description`, when it has neither yet."""
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        try:
            return client.create_experiment(name, tags=describe.training_tags(description))
        except MlflowException as err:
            if err.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
            experiment = client.get_experiment_by_name(name)
    if experiment.lifecycle_stage == "deleted":
        raise UserError(f"experiment {name!r} is deleted; restore it or choose another prefix")
    label_experiment(client, experiment, description)
    return experiment.experiment_id


def git_commit() -> str | None:
    try:
        return git.head(PROJECT_ROOT)
    except (OSError, subprocess.CalledProcessError):
        return None


def cache_identity(params: dict) -> dict[str, str]:
    """The params that decide a pair's results, as stored."""
    return {k: v for k, v in stored(params).items() if k not in S.IGNORED_IN_CACHE}


WHOLE = {"train": train_run_problem, "ingest": ingest_run_problem}
_told: set[str] = set()  # runs already named as not whole by this process


def finished_runs(client, exp_ids: list[str], entry: str, identity: dict[str, str | None]) -> list:
    """FINISHED runs of `entry` at this commit in these experiments, latest first: one search (every
    page) for the whole grid rather than one per pair."""
    runs, token = [], None
    while True:
        page = client.search_runs(
            sorted(set(exp_ids)),
            f"tags.`{n.TAG_COMMIT}` = '{identity[n.TAG_COMMIT]}' and tags.`{n.TAG_ENTRY_POINT}` = '{entry}' and attributes.status = 'FINISHED'",
            order_by=["attributes.start_time DESC"],
            page_token=token,
        )
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def find_reusable(
    client, exp_id: str, entry: str, params: dict[str, str], identity: dict[str, str | None], candidates=None
) -> str | None:
    """The latest FINISHED run that can stand for this one (madness.sweep.is_reusable) and still holds
    its files; a run whose files are gone is named and passed over, so the pair trains again.
    `candidates`: finished_runs() of this experiment, when the caller searched already."""
    if identity.get(n.TAG_COMMIT) is None:
        return None
    if candidates is None:
        candidates = finished_runs(client, [exp_id], entry, identity)
    for run in candidates:
        if run.info.experiment_id != exp_id:
            continue
        if not S.is_reusable(run.info.status, run.data.params, run.data.tags, stored(params), identity):
            continue
        problem = WHOLE[entry](client, run.info.run_id, run)
        if problem is None:
            return run.info.run_id
        if run.info.run_id not in _told:
            _told.add(run.info.run_id)
            print(f"  {run.info.run_name}: not reusing run {run.info.run_id}: {problem}", flush=True)
    return None


def spelled(params: tuple[Param, ...], raw: dict[str, str]) -> dict[str, str]:
    """The params as the child runs get them: numbers in one spelling (madness.sweep.canonical)."""
    return {p.name: S.canonical(raw[p.name]) if p.type in ("int", "float") else raw[p.name] for p in params}


def tag_child(client, run_id: str, sweep_run_id: str, key: str) -> None:
    client.log_batch(run_id, tags=[RunTag(n.TAG_SWEEP, sweep_run_id), RunTag(n.TAG_CLAIM_KEY, key)])


class LaunchError(Exception):
    def __init__(self, message: str, run_id: str | None):
        super().__init__(message)
        self.message, self.run_id = message, run_id


def launch_child(
    client, sweep_run_id: str, entry: str, params: dict, exp_id: str, run_name: str, env_manager: str, known: set
):
    """Launch the entry point as MLflow Projects does and return its SubmittedRun, not waiting for it
    to end. MLflow creates the child run before it builds the environment; when that fails (no conda,
    a pip error) the run would stay RUNNING: end it FAILED (KILLED on an interrupt) and raise
    LaunchError naming it."""
    since_ms = int(time.time() * 1000)
    try:
        # MLflow's asynchronous mlflow.run starts an `mlflow run` CLI per child that only waits for the
        # entry point: a second interpreter importing MLflow (~3 s a pair) whose end status the steps
        # set themselves. Its synchronous path, not waited for, is the same launch without it: the
        # environment built, the run created with the project's tags, the entry point's command started.
        # The sweep waits for it (reap), ends its run if the step could not (settle) and cancels it.
        # mlflow.projects._run is private: tests/test_sweep.py checks the child runs it makes.
        return mlflow.projects._run(
            uri=str(PROJECT_ROOT),
            experiment_id=exp_id,
            entry_point=entry,
            version=None,
            parameters=params,
            docker_args=None,
            backend_name="local",
            backend_config={},
            storage_dir=None,
            env_manager=env_manager,
            synchronous=True,
            run_name=run_name,
            build_image=False,
            docker_auth=None,
        )
    except BaseException as err:
        if isinstance(err, Exception) and store_failure(err) is not None:
            raise  # the store is away: nothing can be looked up or ended now
        orphans = [
            run.info.run_id
            for run in client.search_runs(
                [exp_id],
                f"tags.`mlflow.parentRunId` = '{sweep_run_id}' and tags.`mlflow.project.entryPoint` = '{entry}' "
                f"and attributes.status = 'RUNNING' and attributes.start_time >= {since_ms}",
            )
            if run.info.run_id not in known
        ]
        for run_id in orphans:
            client.set_terminated(run_id, "KILLED" if isinstance(err, KeyboardInterrupt) else "FAILED")
            client.set_tag(run_id, n.TAG_SWEEP, sweep_run_id)
            client.set_tag(run_id, n.TAG_RUN_NAME, run_name)  # MLflow names the run only once it is launched
        if not isinstance(err, (MlflowException, OSError, subprocess.CalledProcessError)):
            raise
        text = str(err).strip()
        raise LaunchError(
            text.splitlines()[0] if text else type(err).__name__, orphans[0] if orphans else None
        ) from None


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
    key: str = ""  # its claim (madness.coordination): the same for every sweep that wants this pair
    waiting_for: str | None = None  # what trains it now: "sweep <id>" or "run <id>"

    def record(self) -> dict:
        return {
            "model": self.pair.model,
            "lr": self.pair.lr,
            "run_id": self.run_id,
            "experiment": self.experiment,
            "experiment_id": self.experiment_id,
            "reused": self.reused,
            "status": self.status,
            "error": self.error,
        }


@dataclass
class Launcher:
    """Runs jobs through `mlflow.run`, `jobs` at a time, and never leaves a child RUNNING. With
    `claims`, a pair another live sweep is training waits for it and is then reused (or trained
    here when that sweep's run failed); pairs are claimed only when a slot is free, so two
    identical sweeps share the grid between them."""

    client: object
    env_manager: str
    jobs: int
    sweep_run_id: str
    identity: dict
    claims: Claims | None = None
    running: list[Job] = field(default_factory=list)
    waiting: list[Job] = field(default_factory=list)
    durations: list[float] = field(default_factory=list)
    store_failed: bool = False

    def launch(self, job: Job) -> None:
        job.started = time.perf_counter()
        try:
            job.submitted = launch_child(
                self.client,
                self.sweep_run_id,
                "train",
                job.params,
                job.experiment_id,
                job.pair.name,
                self.env_manager,
                known={j.run_id for j in self.running},
            )
        except LaunchError as err:
            job.status, job.error, job.run_id = "FAILED", err.message, err.run_id
            self.release(job)
            return
        job.run_id = job.submitted.run_id
        job.status = "RUNNING"
        tag_child(self.client, job.run_id, self.sweep_run_id, job.key)
        self.running.append(job)

    def acquire(self, job: Job) -> str:
        """'go' (this sweep trains it), 'reused' (a finished run stands for it) or 'wait'."""
        if self.claims is None:
            return "go"
        holder = self.claims.blocker(job.experiment_id, job.key)
        job.waiting_for = f"sweep {holder}" if holder else self.live_run_of(job)
        if job.waiting_for is not None:
            return "wait"
        reused = find_reusable(self.client, job.experiment_id, "train", job.params, self.identity)
        if reused is None:
            return "go"
        self.release(job)
        job.run_id, job.reused, job.status = reused, True, "FINISHED"
        return "reused"

    def live_run_of(self, job: Job) -> str | None:
        """A run of this pair still training though its sweep is gone (killed, crashed): wait for it
        rather than train the pair twice; once it ends it is reused, or ended as an orphan."""
        runs = self.client.search_runs(
            [job.experiment_id], f"tags.`{n.TAG_CLAIM_KEY}` = '{job.key}' and attributes.status = 'RUNNING'"
        )
        return next((f"run {run.info.run_id}" for run in runs if self.claims.alive.judge(run)), None)

    def release(self, job: Job) -> None:
        if self.claims is not None:
            self.claims.release(job.experiment_id, job.key)

    def step(self, queue: list[Job]) -> list[Job]:
        """Resolve waiting pairs, start what the free slots allow; return the pairs reused meanwhile."""
        reused = []
        for job in [*self.waiting, *queue]:
            if job in queue and len(self.running) >= self.jobs:
                break
            decision = self.acquire(job)
            if decision == "wait":
                if job in queue:
                    queue.remove(job)
                    self.waiting.append(job)
                continue
            if decision == "go" and len(self.running) >= self.jobs:
                continue  # it goes first once a slot frees
            (self.waiting if job in self.waiting else queue).remove(job)
            if decision == "reused":
                reused.append(job)
            else:
                self.launch(job)
                if job.status == "FAILED":  # could not even start (e.g. its environment failed to build)
                    reused.append(job)
        return reused

    def reap(self) -> list[Job]:
        finished = [job for job in self.running if job.submitted.command_proc.poll() is not None]
        for job in finished:
            self.running.remove(job)
            job.duration = time.perf_counter() - job.started
            code = job.submitted.command_proc.returncode
            job.status = self.settle(job.run_id, "FINISHED" if code == 0 else "FAILED")
            self.release(job)
            if job.status == "FINISHED":
                self.durations.append(job.duration)
        return finished

    def pause(self, seconds: float) -> None:
        """Sleep up to `seconds` (the store is asked about waiting pairs once per poll), but wake as
        soon as a child's process exits."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            if any(job.submitted.command_proc.poll() is not None for job in self.running):
                return
            time.sleep(min(REAP_SECONDS, left))

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

    def drain(self) -> None:
        """The store failed: start nothing more, let the children in flight end on their own (each
        retries the store itself, and may finish), then tidy up what the store still accepts."""
        for job in self.running:
            job.submitted.command_proc.wait()
        with single_attempt():
            for job in self.running:
                try:
                    job.status = self.settle(
                        job.run_id, "FINISHED" if job.submitted.command_proc.returncode == 0 else "FAILED"
                    )
                except Exception:  # noqa: BLE001 - still away: the next sweep ends the run (its process is gone)
                    job.status = "UNKNOWN"
        self.running.clear()

    def run_all(self, queue: list[Job], total: int, done: int) -> None:
        last_print, shown = 0.0, None
        try:
            while queue or self.running or self.waiting:
                for job in self.reap():
                    done += 1
                    print(
                        f"  {job.pair.name}: {job.status} in {S.format_seconds(job.duration)} (run {job.run_id})",
                        flush=True,
                    )
                for job in self.step(queue):
                    done += 1
                    if job.reused:
                        print(f"  {job.pair.name}: reused run {job.run_id}, trained by another sweep", flush=True)
                    else:
                        print(f"  {job.pair.name}: FAILED to start: {job.error}", flush=True)
                waiting = [f"{j.pair.name} ({j.waiting_for})" for j in self.waiting if j.waiting_for]
                line = S.progress_line(
                    done,
                    total,
                    [j.pair.name for j in self.running],
                    S.eta_seconds(self.durations, len(queue) + len(self.running) + len(self.waiting), self.jobs),
                    waiting,
                )
                if line != shown or time.monotonic() - last_print > QUIET_SECONDS:
                    print(line, flush=True)
                    shown, last_print = line, time.monotonic()
                if self.running or self.waiting:
                    self.pause(POLL_SECONDS)
        except BaseException as err:
            if isinstance(err, Exception) and store_failure(err) is not None:
                self.store_failed = True
                self.drain()
            else:
                self.cancel_all()
            raise
        finally:
            if self.claims is not None:
                # The store is away: claims of a finished sweep are ignored anyway.
                with single_attempt(), contextlib.suppress(Exception):
                    self.claims.release_all()


def ensure_ingest(
    client, raw: dict, exp_id: str, identity: dict, env_manager: str, sweep_run_id: str, claims: Claims | None
) -> str:
    params = spelled(DATA_PARAMS, raw)
    key = coordination.claim_key({"entry": "ingest", **stored(params), **identity})
    if claims is not None:  # not forced: reuse, or wait for a sweep already ingesting the same data
        shown = None
        while (reused := find_reusable(client, exp_id, "ingest", params, identity)) is None:
            holder = claims.blocker(exp_id, key)
            if holder is None:
                break
            if holder != shown:
                print(f"ingest: waiting for sweep {holder}, which is ingesting the same data", flush=True)
                shown = holder
            time.sleep(POLL_SECONDS)
        if reused:
            claims.release(exp_id, key)
            print(f"ingest: reusing run {reused}", flush=True)
            return reused
    try:
        return run_ingest(client, params, key, exp_id, env_manager, sweep_run_id)
    finally:
        if claims is not None:
            claims.release(exp_id, key)


def run_ingest(client, params: dict, key: str, exp_id: str, env_manager: str, sweep_run_id: str) -> str:
    print("ingest: running", flush=True)
    try:
        submitted = launch_child(client, sweep_run_id, "ingest", params, exp_id, "ingest", env_manager, known=set())
    except LaunchError as err:
        raise UserError(f"the ingest run could not start: {err.message}") from None
    tag_child(client, submitted.run_id, sweep_run_id, key)
    settle = Launcher(client, env_manager, 1, sweep_run_id, {}).settle
    try:
        ok = submitted.wait()
    except BaseException:
        submitted.cancel()
        settle(submitted.run_id, "KILLED")
        raise
    if not ok:
        settle(submitted.run_id, "FAILED")
        raise UserError(f"the ingest run {submitted.run_id} failed; see its output above")
    return submitted.run_id


def log_pairs(jobs: list[Job], after_store_failure: bool) -> None:
    """pairs.json: each pair's run and status. After the store failed, one brief try."""
    if not after_store_failure:
        mlflow.log_dict([job.record() for job in jobs], n.PAIRS_FILE)
        return
    with single_attempt(), contextlib.suppress(Exception):  # the store is still away; the error that follows names it
        mlflow.log_dict([job.record() for job in jobs], n.PAIRS_FILE)


def plan(client, values: dict, raw: dict, features_uri: str, identity: dict, threads: int) -> list[Job]:
    jobs = []
    pairs = S.grid(values["models"], values["lrs"])
    experiments = {}  # name -> id: one lookup per model, not per pair
    for pair in pairs:
        name = f"{values['prefix']}_{pair.model}"
        params = {
            "model": pair.model,
            "lr": pair.lr,
            **spelled(GRID_NUMBERS, raw),
            "threads": str(threads),
            "features_uri": features_uri,
            **spelled(DATA_PARAMS, raw),
        }
        if name not in experiments:
            lrs = [p.lr for p in pairs if p.model == pair.model]
            experiments[name] = experiment_id(
                client, name, describe.model_description(pair.model, lrs, params["epochs"])
            )
        job = Job(
            pair,
            name,
            experiments[name],
            params,
            key=coordination.claim_key({"entry": "train", **cache_identity(params), **identity}),
        )
        jobs.append(job)
    if values["force"] or identity.get(n.TAG_COMMIT) is None:
        return jobs
    candidates = finished_runs(client, list(experiments.values()), "train", identity)
    for job in jobs:
        job.run_id = find_reusable(client, job.experiment_id, "train", job.params, identity, candidates)
        if job.run_id:
            job.reused, job.status = True, "FINISHED"
    return jobs


@entry_point
def main(argv=None):
    values, raw = parse("main", __doc__.splitlines()[0], PARAMS, argv)
    pairs = S.grid(values["models"], values["lrs"])  # an empty or repeated list stops here
    if not seasons_of(values).has_test:
        raise UserError(
            f"a sweep compares its pairs by their Brier on the test seasons: test_season must be at most "
            f"last_season ({values['last_season']}), got {values['test_season']}; to train a model for the coming "
            "tournament without test seasons, run the train entry point"
        )
    client = mlflow.MlflowClient()
    models, lrs = list(dict.fromkeys(p.model for p in pairs)), list(dict.fromkeys(p.lr for p in pairs))
    description = describe.sweep_description(values["prefix"], models, lrs, S.canonical(raw["epochs"]))
    sweep_exp = experiment_id(client, values["prefix"], description)
    report_step.check_filter(values["filter"], sweep_exp)
    # Under `mlflow run .` the sweep run already exists (MLFLOW_RUN_ID); on its own it goes in <prefix>.
    where = {} if os.environ.get("MLFLOW_RUN_ID") else {"experiment_id": sweep_exp, "run_name": "sweep"}
    with start_run("main", raw, **where) as sweep:
        sweep_id = sweep.info.run_id
        if sweep.info.experiment_id != sweep_exp:  # `mlflow run` put it elsewhere (--experiment-name, or Default)
            label_experiment(client, client.get_experiment(sweep.info.experiment_id), description=None)
        identity = {n.TAG_COMMIT: git_commit(), **git.state(PROJECT_ROOT)}
        identity.setdefault(n.TAG_STATE, None)
        identity.pop(n.TAG_DIRTY, None)
        liveness = Liveness(client)
        claims = None if values["force"] else Claims(client, sweep_id, liveness)
        ingest_id = ensure_ingest(client, raw, sweep_exp, identity, values["env_manager"], sweep_id, claims)
        digest = client.get_run(ingest_id).data.tags.get(n.TAG_DATA_DIGEST)
        identity = {**identity, n.TAG_DATA_DIGEST: digest}
        jobs = plan(
            client, values, raw, f"runs:/{ingest_id}/{n.FEATURES_DIR}", identity, S.threads_per_job(values["jobs"])
        )
        orphans = end_orphans(client, [sweep_exp, *(job.experiment_id for job in jobs)], liveness, f"sweep {sweep_id}")
        if orphans:
            print(
                f"ended FAILED {len(orphans)} run(s) left RUNNING by processes that are gone: {', '.join(orphans)}",
                flush=True,
            )
        todo = [job for job in jobs if not job.reused]
        print(
            f"sweep {sweep_id}: {len(jobs)} pairs, {len(jobs) - len(todo)} reused, {len(todo)} to train "
            f"(jobs={values['jobs']}, env_manager={values['env_manager']})",
            flush=True,
        )
        launcher = Launcher(client, values["env_manager"], values["jobs"], sweep_id, identity, claims)
        try:
            launcher.run_all(list(todo), total=len(jobs), done=len(jobs) - len(todo))
        finally:
            log_pairs(jobs, after_store_failure=launcher.store_failed)
        reused = sum(job.reused for job in jobs)
        mlflow.log_metrics({"pairs_trained": len(jobs) - reused, "pairs_reused": reused})
        report_step.report(sweep_id, values["filter"], values["register"])
        failed = [job.pair.name for job in jobs if job.status != "FINISHED"]
        if failed:
            raise UserError(
                f"{len(failed)} of {len(jobs)} pairs failed: {', '.join(failed)}; run the sweep again to retry only those"
            )


if __name__ == "__main__":
    run_as_script(main)
