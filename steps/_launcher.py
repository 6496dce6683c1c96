"""The sweep's children: each a packaged `mlflow.projects.run` of an entry point on an MLflow
backend, run by a pool of worker threads, one function owning a child's whole life (launch, wait,
end its run), so the same code drives a local process and a Kubernetes Job.

Locally each child runs synchronously in its worker: MLflow creates the run and runs the entry
point's command as a child process of this one, with no `mlflow run` process in between. Elsewhere
MLflow submits the job and the worker polls its status through the public `SubmittedRun` API.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import functools
import os
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

import mlflow
import mlflow.projects
from mlflow.entities import RunStatus, RunTag
from mlflow.exceptions import MlflowException

from madness import names, sweep
from madness.backends import LOCAL, Backend, pod_start_seconds
from madness.names import ENDED, Status
from steps import _lifecycle
from steps._coordination import Claims
from steps._entry import PROJECT_ROOT
from steps._failures import is_store_failure
from steps._image import write_variant
from steps._lifecycle import single_attempt
from steps._processes import stop_mlflow_children
from steps._runs import end_killed, end_run

POLL_SECONDS = 1.0  # how often the store is asked about pairs waiting for another sweep
REMOTE_STATUS_SECONDS = 5.0  # as MLflow's own KubernetesSubmittedRun.wait polls
QUIET_SECONDS = 30.0
# How long a child's status may stay unreadable (its cluster out of reach) before it counts as failed.
STATUS_PATIENCE_SECONDS = 300.0
SUBMIT_LOCK_FILE = f"fabric-madness-submit-{os.getuid()}.lock"
SUBMIT_LOCK_POLL_SECONDS = 0.2


def status_of(submitted) -> Status:
    """Return the child's status: local runs report a name, Kubernetes ones a RunStatus number."""
    status = submitted.get_status()
    return Status(status if isinstance(status, str) else RunStatus.to_string(status))


def tag_child(client, run_id: str, sweep_run_id: str, key: str) -> None:
    """Tag the child's run with the sweep's run id and the pair's claim key."""
    client.log_batch(run_id, tags=[RunTag(names.TAG_SWEEP, sweep_run_id), RunTag(names.TAG_CLAIM_KEY, key)])


# What a local launch may raise that is the child's fault, not this code's: anything else is a bug, raised.
LOCAL_LAUNCH_FAILURES = (MlflowException, OSError, subprocess.CalledProcessError)


@functools.cache
def variant_project(image: str) -> Path:
    """Return a folder, removed at this process's exit, holding the project's MLproject with its entry points
    run in `image`."""
    folder = Path(tempfile.mkdtemp(prefix="fabric-madness-kubernetes-"))
    atexit.register(shutil.rmtree, folder, True)
    return write_variant(folder, image)


@contextlib.contextmanager
def one_remote_submit_at_a_time():
    """Hold this machine's submit lock while the block runs, for whichever sweep or worker thread asks
    (an flock on a file of its own, opened afresh each time): MLflow's kubernetes backend builds and
    pushes one image tag for every child, and Docker's own registry answers 500 ("invalid checksum
    digest format") to two pushes of one tag at once. Waiting for it (another sweep's first image
    build takes minutes) raises Interrupted as soon as the step is asked to stop."""
    with open(Path(tempfile.gettempdir()) / SUBMIT_LOCK_FILE, "a") as lock:
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)  # released when the file closes, or its process dies
                break
            except BlockingIOError:
                _lifecycle.wait(SUBMIT_LOCK_POLL_SECONDS)
        yield


def submit(entry: str, params: dict, exp_id: str, run_name: str, backend: Backend):
    """Run the entry point through MLflow's public `mlflow.projects.run` and return its SubmittedRun.
    Locally the call is synchronous: it returns once the command succeeded, and raises
    ExecutionException when it failed (MLflow has then ended the run FAILED). Elsewhere it returns
    the submitted job at once, wrapped to stop its pods and to notice a pod that never starts; one
    such submission (image build and push) at a time on this machine."""
    local = backend.name == LOCAL
    with contextlib.nullcontext() if local else one_remote_submit_at_a_time():
        submitted = mlflow.projects.run(
            uri=str(PROJECT_ROOT if local else variant_project(backend.image)),
            entry_point=entry,
            parameters=params,
            experiment_id=exp_id,
            backend=backend.name,
            backend_config=dict(backend.config),  # MLflow adds its own keys to the dict it is given
            env_manager=backend.env_manager,
            synchronous=local,
            run_name=run_name,
        )
    if local:
        return submitted
    # Imported here: the kubernetes client loads only for a Kubernetes sweep.
    from steps._kubernetes import KubernetesChild

    return KubernetesChild(submitted, pod_start_seconds(backend.config))


DOCKER_INFO_FAILED = "Ran `docker info`"  # how MLflow's validate_docker_installation begins, the output below it


def launch_failure(err: BaseException) -> str:
    """Return one line saying why a child could not be launched or watched: no Docker engine, no Kubernetes
    cluster, or the error's first line."""
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


def child_run(client, sweep_run_id: str, entry: str, exp_id: str, since_ms: int, distinct: dict):
    """Return the run MLflow made since `since_ms` for this child of the sweep, told from its other
    children by the `distinct` params (its name may have changed since: a step names its run), or None."""
    by_params = "".join(f" and params.`{key}` = '{value}'" for key, value in distinct.items())
    runs = client.search_runs(
        [exp_id],
        f"tags.`{names.TAG_PARENT_RUN}` = '{sweep_run_id}' and tags.`{names.TAG_PROJECT_ENTRY_POINT}` = '{entry}' "
        f"and attributes.start_time >= {since_ms}{by_params}",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    return runs[0] if runs else None


def wait_remote(submitted, stopping: threading.Event, name: str) -> tuple[Status, str]:
    """Wait for a child on another backend, polling its status; cancel it once `stopping` is set.
    While its backend cannot say its status (a cluster out of reach) it counts as running, for
    STATUS_PATIENCE_SECONDS, then as FAILED, named, and asked to stop. Return its status and why."""
    unread_since = None
    while not stopping.is_set():
        try:
            status = status_of(submitted)
        except Exception as err:  # noqa: BLE001 - the backend's client libraries raise their own
            now = time.monotonic()
            if unread_since is None:
                unread_since = now
                print(f"  {name}: its status cannot be read: {launch_failure(err)}; asking again", flush=True)
            if now - unread_since >= STATUS_PATIENCE_SECONDS:
                with contextlib.suppress(Exception):
                    submitted.cancel()
                waited = sweep.format_seconds(now - unread_since)
                return Status.FAILED, f"its status could not be read for {waited}: {launch_failure(err)}"
        else:
            unread_since = None
            if status in ENDED:
                return status, getattr(submitted, "reason", "")  # why a Kubernetes pod never started
        stopping.wait(REMOTE_STATUS_SECONDS)
    try:
        submitted.cancel()
    except Exception as err:  # noqa: BLE001 - the backend's client libraries raise their own
        print(f"  {name}: could not be stopped: {launch_failure(err)}", flush=True)
    return Status.KILLED, ""


def run_child(
    client,
    sweep_run_id: str,
    entry: str,
    params: dict,
    exp_id: str,
    run_name: str,
    backend,
    key: str = "",
    distinct: tuple[str, ...] = (),
) -> tuple[str | None, Status, str, bool]:
    """Run the entry point as a child run of the sweep, wait for it to end, and end its run if the
    child did not: with the status its backend reports, FAILED when it could not start (MLflow
    creates the run before it builds the environment or the image: no conda, a pip error, no Docker
    engine), KILLED when this step was asked to stop, the child's step stopped (tagged `stopped`) or
    the wait was interrupted (then re-raised). Tag the run with the sweep and the pair's claim
    `key`; the params named `distinct` tell its run from the sweep's other children. Return the run's
    id (None when MLflow never made one), its final status, why it could not start or be watched,
    and whether it started. A failing store is raised: nothing can be looked up or ended then."""
    since_ms = int(time.time() * 1000)
    error, started, stopped = "", True, False
    try:
        submitted = submit(entry, params, exp_id, run_name, backend)
        status = Status.FINISHED
        if backend.name != LOCAL:
            status, error = wait_remote(submitted, _lifecycle.stop, run_name)
        run_id = submitted.run_id
    except BaseException as err:
        interrupted = isinstance(err, KeyboardInterrupt)
        # Another backend's client libraries (docker, kubernetes) raise their own errors, all the child's.
        child_errors = LOCAL_LAUNCH_FAILURES if backend.name == LOCAL else Exception
        if is_store_failure(err) or not (interrupted or isinstance(err, child_errors)):
            raise
        run = child_run(client, sweep_run_id, entry, exp_id, since_ms, {key: params[key] for key in distinct})
        run_id = run.info.run_id if run else None
        if interrupted:
            if run_id is not None:
                end_killed(client, run_id)
            raise
        if run_id is None:
            return None, Status.FAILED, launch_failure(err), False
        # Its step may stop on its own before this sweep does (both see their launcher go).
        stopped = names.TAG_STOPPED in run.data.tags
        # A run MLflow ended FAILED is a command that ran and failed (it said why itself); one left
        # RUNNING is a launch that failed.
        started = run.info.status == Status.FAILED
        if not started:
            error = launch_failure(err)
            client.set_tag(run_id, names.TAG_RUN_NAME, run_name)  # MLflow names the run only once it is launched
        status = Status.FAILED
    tag_child(client, run_id, sweep_run_id, key)
    ended = end_killed(client, run_id) if _lifecycle.stop.is_set() or stopped else end_run(client, run_id, status)
    return run_id, ended, error, started


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
    duration: float = 0.0
    error: str = ""
    started: bool = True  # False: it could not start (its environment, image or job failed to be made)
    key: str = ""  # its claim (steps._coordination.Claims): the same for every sweep that wants this pair
    waiting_for: str | None = None  # what trains it now: "sweep <id>" or "run <id>"
    waited: bool = False  # it waited for another sweep or run: looked at again even with no slot free

    def record(self) -> dict:
        """Return the pair's entry of pairs.json: model, lr, run id, experiment, whether reused, status and error."""
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
    """Runs jobs through `mlflow.projects.run` on `backend`, `jobs` at a time in a pool of worker
    threads, and never leaves a child RUNNING. With `claims`, a pair another live sweep is training
    waits for it and is then reused (`reusable` finds the run that stands for it) or trained here
    when that sweep's run failed; pairs are claimed only when a slot is free, so two identical
    sweeps share the grid between them."""

    client: object
    backend: Backend
    jobs: int
    sweep_run_id: str
    reusable: Callable[[Job], str | None]
    claims: Claims | None = None
    distinct: tuple[str, ...] = ("model", "lr")  # the params that tell one job's run from another's
    running: dict[Future, Job] = field(default_factory=dict)
    durations: list[float] = field(default_factory=list)
    store_failed: bool = False

    def train(self, job: Job) -> None:
        """Run the pair's child to its end in this worker thread and record what became of it."""
        # MLflow keeps the active run per thread, and tags the runs launched from a thread as children
        # of its active run (`mlflow.parentRunId`): the sweep's run is made this worker's.
        active = mlflow.active_run()
        if active is None or active.info.run_id != self.sweep_run_id:
            mlflow.start_run(run_id=self.sweep_run_id, nested=active is not None)
        began = time.perf_counter()
        job.run_id, job.status, job.error, job.started = run_child(
            self.client,
            self.sweep_run_id,
            "train",
            job.params,
            job.experiment_id,
            job.pair.name,
            self.backend,
            job.key,
            distinct=self.distinct,
        )
        job.duration = time.perf_counter() - began

    def tag_started(self) -> None:
        """Tag each running child's run with the sweep and the pair's claim as soon as MLflow has
        made it (its worker learns its id only at its end), so that other sweeps find it while it trains."""
        untagged = [job for job in self.running.values() if job.run_id is None]
        if not untagged:
            return
        runs = self.client.search_runs(
            sorted({job.experiment_id for job in untagged}),
            f"tags.`{names.TAG_PARENT_RUN}` = '{self.sweep_run_id}' and attributes.status = 'RUNNING'",
        )
        for job in untagged:
            run = next((r for r in runs if all(r.data.params.get(k) == job.params[k] for k in self.distinct)), None)
            if run is not None:
                job.run_id = run.info.run_id
                tag_child(self.client, job.run_id, self.sweep_run_id, job.key)

    def acquire(self, job: Job) -> None:
        """Decide whether this sweep trains the pair now, waits for another sweep or run that trains
        it (then named in `job.waiting_for`), or reuses a finished run that stands for it (then
        recorded on the job)."""
        if self.claims is None:
            return
        holder = self.claims.holder_ahead(job.experiment_id, job.key)
        job.waiting_for = f"sweep {holder}" if holder else self.live_run_of(job)
        if job.waiting_for is None and (reused := self.reusable(job)) is not None:
            self.claims.release(job.experiment_id, job.key)
            job.run_id, job.reused, job.status = reused, True, Status.FINISHED

    def live_run_of(self, job: Job) -> str | None:
        """Return "run <id>" for a run of this pair still training though its sweep is gone (killed,
        crashed), else None: the pair waits for it rather than train twice; once it ends it is reused,
        or ended as an orphan."""
        runs = self.client.search_runs(
            [job.experiment_id], f"tags.`{names.TAG_CLAIM_KEY}` = '{job.key}' and attributes.status = 'RUNNING'"
        )
        return next((f"run {run.info.run_id}" for run in runs if self.claims.alive.judge(run)), None)

    def step(self, pending: list[Job], pool: ThreadPoolExecutor) -> list[Job]:
        """Look at the pending pairs in order and start what the free slots allow; take the pairs started
        or reused out of `pending` and return the reused ones."""
        reused = []
        for job in list(pending):
            if len(self.running) >= self.jobs and not job.waited:
                break  # it and those after it are claimed only once a slot frees
            self.acquire(job)
            if job.reused:
                pending.remove(job)
                reused.append(job)
            elif job.waiting_for is not None:
                job.waited = True
            elif len(self.running) < self.jobs:  # else it goes first once a slot frees
                pending.remove(job)
                job.status = Status.RUNNING
                self.running[pool.submit(self.train, job)] = job
        return reused

    def collect_ended(self) -> list[Job]:
        """Take the children that ended out of the running ones and release their claims; return
        them. A worker's error (a bug, the store failing) is raised."""
        jobs = []
        for future in [future for future in self.running if future.done()]:
            job = self.running.pop(future)
            if self.claims is not None:
                self.claims.release(job.experiment_id, job.key)
            future.result()
            if job.status == Status.FINISHED:
                self.durations.append(job.duration)
            jobs.append(job)
        return jobs

    def run_all(self, pending: list[Job], total: int) -> None:
        """Run the pending jobs (of `total` pairs, the others reused) to their end, printing each pair's outcome and
        the progress. On an error or interrupt stop the children (a failing store lets them end) and re-raise;
        release this sweep's claims in any case."""
        last_print, shown = 0.0, None
        pool = ThreadPoolExecutor(self.jobs, thread_name_prefix="pair")
        try:
            while pending or self.running:
                _lifecycle.check_stop()
                for job in self.collect_ended():
                    if not job.started:
                        print(f"  {job.pair.name}: FAILED to start: {job.error}", flush=True)
                        continue
                    why = f": {job.error}" if job.error else ""
                    print(
                        f"  {job.pair.name}: {job.status} in {sweep.format_seconds(job.duration)} (run {job.run_id}){why}",
                        flush=True,
                    )
                for job in self.step(pending, pool):
                    print(f"  {job.pair.name}: reused run {job.run_id}, trained by another sweep", flush=True)
                left = len(pending) + len(self.running)
                line = sweep.progress_line(
                    total - left,
                    total,
                    [job.pair.name for job in self.running.values()],
                    sweep.eta_seconds(self.durations, left, self.jobs),
                    [f"{job.pair.name} ({job.waiting_for})" for job in pending if job.waiting_for],
                )
                if line != shown or time.monotonic() - last_print > QUIET_SECONDS:
                    print(line, flush=True)
                    shown, last_print = line, time.monotonic()
                if self.running:  # until the next poll, or a child ends
                    wait(self.running, timeout=POLL_SECONDS, return_when=FIRST_COMPLETED)
                    self.tag_started()
                elif pending:  # each waiting for another sweep or run
                    _lifecycle.stop.wait(POLL_SECONDS)
        except BaseException as err:
            # The store failed: start nothing more and let the children in flight end on their own
            # (each retries the store itself, and may finish). Otherwise stop them: each worker ends its run.
            self.store_failed = is_store_failure(err)
            if not self.store_failed:
                _lifecycle.stop.set()
                if self.backend.name == LOCAL:
                    stop_mlflow_children()
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
            if self.claims is not None:
                # The store is away: claims of a finished sweep are ignored anyway.
                with single_attempt(), contextlib.suppress(Exception):
                    self.claims.release_all()
