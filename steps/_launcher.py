"""The sweep's children: each a packaged `mlflow.run` of an entry point on an MLflow backend,
watched and ended through MLflow's public `SubmittedRun` API only (`get_status`, `wait`, `cancel`,
`run_id`), so the same code drives a local process and a Kubernetes Job.

A child's run is never left RUNNING: a child that ends without ending its run (killed, evicted,
its process gone) has it ended here with the status its backend reports; a launch that fails after
MLflow created the run ends that run FAILED (KILLED on an interrupt).
"""

from __future__ import annotations

import atexit
import contextlib
import enum
import functools
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import mlflow
import mlflow.projects
import yaml
from mlflow.entities import RunStatus, RunTag
from mlflow.exceptions import MlflowException

from madness import names, sweep
from madness.backends import LOCAL, Backend, docker_variant
from steps._coordination import Claims
from steps._entry import PROJECT_ROOT, single_attempt
from steps._failures import is_store_failure
from steps._runs import ENDED, Status, end_run

POLL_SECONDS = 1.0  # how often the store is asked about pairs waiting for another sweep
# How often a running child's status is asked for: a local child's is its process' exit code, cheap,
# so the next pair starts without waiting out a poll; another backend's is a call to its API.
STATUS_SECONDS = {LOCAL: 0.05}
REMOTE_STATUS_SECONDS = 5.0  # as MLflow's own KubernetesSubmittedRun.wait polls
QUIET_SECONDS = 30.0
# How long a child's status may stay unreadable (its cluster out of reach) before it counts as failed.
STATUS_PATIENCE_SECONDS = 300.0


def status_of(submitted) -> Status:
    """Return the child's status: local runs report a name, Kubernetes ones a RunStatus number."""
    status = submitted.get_status()
    return Status(status if isinstance(status, str) else RunStatus.to_string(status))


def tag_child(client, run_id: str, sweep_run_id: str, key: str) -> None:
    client.log_batch(run_id, tags=[RunTag(names.TAG_SWEEP, sweep_run_id), RunTag(names.TAG_CLAIM_KEY, key)])


class LaunchError(Exception):
    def __init__(self, message: str, run_id: str | None):
        super().__init__(message)
        self.message, self.run_id = message, run_id


# What a local launch may raise that is the child's fault, not this code's: anything else is a bug, raised.
LOCAL_LAUNCH_FAILURES = (MlflowException, OSError, subprocess.CalledProcessError)


@functools.cache
def variant_project(image: str) -> Path:
    """A folder holding the project's MLproject with its entry points run in `image` (made once per
    process, removed at its exit): MLflow's kubernetes backend wants a docker_env, which in the
    project's own MLproject would make every local run need Docker."""
    folder = Path(tempfile.mkdtemp(prefix="fabric-madness-kubernetes-"))
    atexit.register(shutil.rmtree, folder, True)
    project = yaml.safe_load((PROJECT_ROOT / "MLproject").read_text())
    (folder / "MLproject").write_text(yaml.safe_dump(docker_variant(project, image), sort_keys=False))
    return folder


def submit(entry: str, params: dict, exp_id: str, run_name: str, backend: Backend):
    """Start the entry point on `backend` through MLflow's public `mlflow.projects.run` and return
    its SubmittedRun without waiting for it. Locally MLflow builds the environment, creates the run
    and starts an `mlflow run --run-id` process that runs the entry point's command; elsewhere it
    submits the job the backend runs."""
    project = PROJECT_ROOT if backend.name == LOCAL else variant_project(backend.image)
    return mlflow.projects.run(
        uri=str(project),
        entry_point=entry,
        parameters=params,
        experiment_id=exp_id,
        backend=backend.name,
        backend_config=dict(backend.config),  # MLflow adds its own keys to the dict it is given
        env_manager=backend.env_manager,
        synchronous=False,
        run_name=run_name,
    )


DOCKER_INFO_FAILED = "Ran `docker info`"  # how MLflow's validate_docker_installation begins, the output below it


def launch_failure(err: BaseException) -> str:
    text = str(err).strip()
    line = text.splitlines()[0] if text else ""
    if line.startswith(DOCKER_INFO_FAILED):
        said = [part.strip() for part in text.splitlines()[1:] if part.strip()]
        return f"no Docker engine to push the image with: `docker info` says: {said[-1] if said else 'nothing'}"
    if type(err).__name__ == "ConfigException":  # kubernetes' own: neither the context named nor in-cluster config
        return (
            f"no Kubernetes cluster to create the Job in: {line.rstrip('.') or 'no configuration'}; name a context of "
            "`kubectl config get-contexts` as kube-context in backend_config"
        )
    if isinstance(err, LOCAL_LAUNCH_FAILURES):
        return line or type(err).__name__
    return f"{type(err).__name__}: {line}" if line else type(err).__name__


def launch_child(client, sweep_run_id: str, entry: str, params: dict, exp_id: str, run_name: str, backend, known: set):
    """Launch the entry point as MLflow Projects does and return its SubmittedRun, not waiting for it
    to end. MLflow creates the child run before it builds the environment or the image; when that
    fails (no conda, a pip error, no Docker engine) the run would stay RUNNING: end it FAILED
    (KILLED on an interrupt) and raise LaunchError naming the cause in one line."""
    since_ms = int(time.time() * 1000)
    try:
        return submit(entry, params, exp_id, run_name, backend)
    except BaseException as err:
        if is_store_failure(err):
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
            end_run(client, run_id, Status.KILLED if isinstance(err, KeyboardInterrupt) else Status.FAILED)
            client.set_tag(run_id, names.TAG_SWEEP, sweep_run_id)
            client.set_tag(run_id, names.TAG_RUN_NAME, run_name)  # MLflow names the run only once it is launched
        # Another backend's client libraries (docker, kubernetes) raise their own errors, all the child's.
        if not isinstance(err, LOCAL_LAUNCH_FAILURES if backend.name == LOCAL else Exception):
            raise
        raise LaunchError(launch_failure(err), orphans[0] if orphans else None) from None


class Turn(enum.Enum):
    """What the sweep does with a pair now."""

    TRAIN = "train"
    WAIT = "wait"
    REUSED = "reused"


@dataclass
class Job:
    """One pair of the sweep: what it is launched with, and what became of it (its run, status, error)."""

    pair: sweep.Pair
    experiment: str
    experiment_id: str
    params: dict
    run_id: str | None = None
    reused: bool = False
    status: Status = Status.SCHEDULED
    submitted: object = None
    started: float = 0.0
    duration: float = 0.0
    error: str = ""
    key: str = ""  # its claim (madness.coordination): the same for every sweep that wants this pair
    waiting_for: str | None = None  # what trains it now: "sweep <id>" or "run <id>"
    unread_since: float | None = None  # when its backend last failed to say its status

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
    """Runs jobs through `mlflow.run` on `backend`, `jobs` at a time, and never leaves a child
    RUNNING. With `claims`, a pair another live sweep is training waits for it and is then reused
    (`reusable` finds the run that stands for it) or trained here when that sweep's run failed;
    pairs are claimed only when a slot is free, so two identical sweeps share the grid between them."""

    client: object
    backend: Backend
    jobs: int
    sweep_run_id: str
    reusable: Callable[[Job], str | None]
    claims: Claims | None = None
    running: list[Job] = field(default_factory=list)
    waiting: list[Job] = field(default_factory=list)
    durations: list[float] = field(default_factory=list)
    store_failed: bool = False

    def launch(self, job: Job) -> None:
        """Launch the pair's child and count it running; one that cannot start is FAILED with why."""
        job.started = time.perf_counter()
        try:
            job.submitted = launch_child(
                self.client,
                self.sweep_run_id,
                "train",
                job.params,
                job.experiment_id,
                job.pair.name,
                self.backend,
                known={j.run_id for j in self.running},
            )
        except LaunchError as err:
            job.status, job.error, job.run_id = Status.FAILED, err.message, err.run_id
            self.release(job)
            return
        job.run_id = job.submitted.run_id
        job.status = Status.RUNNING
        tag_child(self.client, job.run_id, self.sweep_run_id, job.key)
        self.running.append(job)

    def acquire(self, job: Job) -> Turn:
        """Decide whether this sweep trains the pair now, waits for another sweep or run that trains
        it, or reuses a finished run that stands for it (then recorded on the job)."""
        if self.claims is None:
            return Turn.TRAIN
        holder = self.claims.holder_ahead(job.experiment_id, job.key)
        job.waiting_for = f"sweep {holder}" if holder else self.live_run_of(job)
        if job.waiting_for is not None:
            return Turn.WAIT
        reused = self.reusable(job)
        if reused is None:
            return Turn.TRAIN
        self.release(job)
        job.run_id, job.reused, job.status = reused, True, Status.FINISHED
        return Turn.REUSED

    def live_run_of(self, job: Job) -> str | None:
        """A run of this pair still training though its sweep is gone (killed, crashed): wait for it
        rather than train the pair twice; once it ends it is reused, or ended as an orphan."""
        runs = self.client.search_runs(
            [job.experiment_id], f"tags.`{names.TAG_CLAIM_KEY}` = '{job.key}' and attributes.status = 'RUNNING'"
        )
        return next((f"run {run.info.run_id}" for run in runs if self.claims.alive.judge(run)), None)

    def release(self, job: Job) -> None:
        """Give up this sweep's claim on the pair, if it holds one."""
        if self.claims is not None:
            self.claims.release(job.experiment_id, job.key)

    def step(self, queue: list[Job]) -> list[Job]:
        """Resolve waiting pairs, start what the free slots allow; return the pairs reused meanwhile."""
        reused = []
        for job in [*self.waiting, *queue]:
            if job in queue and len(self.running) >= self.jobs:
                break
            decision = self.acquire(job)
            if decision == Turn.WAIT:
                if job in queue:
                    queue.remove(job)
                    self.waiting.append(job)
                continue
            if decision == Turn.TRAIN and len(self.running) >= self.jobs:
                continue  # it goes first once a slot frees
            (self.waiting if job in self.waiting else queue).remove(job)
            if decision == Turn.REUSED:
                reused.append(job)
            else:
                self.launch(job)
                if job.status == Status.FAILED:  # could not even start (e.g. its environment failed to build)
                    reused.append(job)
        return reused

    def status(self, job: Job) -> str:
        """The child's status; while its backend cannot say it (a cluster out of reach) it counts as
        RUNNING, for STATUS_PATIENCE_SECONDS, then as FAILED, named, and asked to stop."""
        try:
            status = status_of(job.submitted)
        except Exception as err:  # noqa: BLE001 - the backend's client libraries raise their own
            now = time.monotonic()
            if job.unread_since is None:
                job.unread_since = now
                print(f"  {job.pair.name}: its status cannot be read: {launch_failure(err)}; asking again", flush=True)
            if now - job.unread_since < STATUS_PATIENCE_SECONDS:
                return Status.RUNNING
            job.error = f"its status could not be read for {sweep.format_seconds(now - job.unread_since)}: {launch_failure(err)}"
            with contextlib.suppress(Exception):
                job.submitted.cancel()
            return Status.FAILED
        job.unread_since = None
        return status

    def collect_ended(self) -> list[Job]:
        """Take the children that ended out of the running ones, end each one's run if the child
        did not (with the status its backend reports) and release its claim; return them."""
        ended = [(job, status) for job in self.running if (status := self.status(job)) in ENDED]
        for job, status in ended:
            self.running.remove(job)
            job.duration = time.perf_counter() - job.started
            job.status = end_run(self.client, job.run_id, status)
            self.release(job)
            if job.status == Status.FINISHED:
                self.durations.append(job.duration)
        return [job for job, _ in ended]

    def pause(self, seconds: float) -> None:
        """Sleep up to `seconds` (the store is asked about waiting pairs once per poll), but wake as
        soon as a child ends."""
        every = STATUS_SECONDS.get(self.backend.name, REMOTE_STATUS_SECONDS)
        deadline = time.monotonic() + max(seconds, 0.0 if self.backend.name == LOCAL else every)
        while (left := deadline - time.monotonic()) > 0:
            time.sleep(min(every, left))
            if any(self.status(job) in ENDED for job in self.running):
                return

    def cancel_all(self) -> None:
        """Stop every child and end its run KILLED: one its backend cannot stop (a cluster out of
        reach) is named, and its run ended all the same."""
        for job in self.running:
            try:
                job.submitted.cancel()
            except Exception as err:  # noqa: BLE001 - the backend's client libraries raise their own
                print(f"  {job.pair.name}: could not be stopped: {launch_failure(err)}", flush=True)
            job.status = end_run(self.client, job.run_id, Status.KILLED)
        self.running.clear()

    def finish_after_store_failure(self) -> None:
        """The store failed: start nothing more, let the children in flight end on their own (each
        retries the store itself, and may finish), then tidy up what the store still accepts."""
        succeeded = {job.run_id: job.submitted.wait() for job in self.running}
        with single_attempt():
            for job in self.running:
                try:
                    job.status = end_run(
                        self.client, job.run_id, Status.FINISHED if succeeded[job.run_id] else Status.FAILED
                    )
                except Exception:  # noqa: BLE001 - still away: the next sweep ends the run (its process is gone)
                    job.status = Status.UNKNOWN
        self.running.clear()

    def run_all(self, queue: list[Job], total: int, done: int) -> None:
        last_print, shown = 0.0, None
        try:
            while queue or self.running or self.waiting:
                for job in self.collect_ended():
                    done += 1
                    why = f": {job.error}" if job.error else ""
                    print(
                        f"  {job.pair.name}: {job.status} in {sweep.format_seconds(job.duration)} (run {job.run_id}){why}",
                        flush=True,
                    )
                for job in self.step(queue):
                    done += 1
                    if job.reused:
                        print(f"  {job.pair.name}: reused run {job.run_id}, trained by another sweep", flush=True)
                    else:
                        print(f"  {job.pair.name}: FAILED to start: {job.error}", flush=True)
                waiting = [f"{j.pair.name} ({j.waiting_for})" for j in self.waiting if j.waiting_for]
                line = sweep.progress_line(
                    done,
                    total,
                    [j.pair.name for j in self.running],
                    sweep.eta_seconds(self.durations, len(queue) + len(self.running) + len(self.waiting), self.jobs),
                    waiting,
                )
                if line != shown or time.monotonic() - last_print > QUIET_SECONDS:
                    print(line, flush=True)
                    shown, last_print = line, time.monotonic()
                if self.running or self.waiting:
                    self.pause(POLL_SECONDS)
        except BaseException as err:
            if is_store_failure(err):
                self.store_failed = True
                self.finish_after_store_failure()
            else:
                self.cancel_all()
            raise
        finally:
            if self.claims is not None:
                # The store is away: claims of a finished sweep are ignored anyway.
                with single_attempt(), contextlib.suppress(Exception):
                    self.claims.release_all()
