"""Whether a run's process is alive, claims on pairs, and the ending of orphaned runs, against the
tracking store.

Liveness. Every step tags its run with its host and a token of its process (steps._processes)
and, against a remote store, refreshes a heartbeat. A RUNNING run is alive while its process runs
(same host) or its heartbeat is fresh (another host). A run not yet tagged (its environment still
building) is as alive as the sweep that launched it. The claims' rules live in `madness.coordination`.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
import urllib.parse
from dataclasses import dataclass

import mlflow
from mlflow.exceptions import MlflowException

from madness import coordination, names
from steps import _lifecycle
from steps import _never_started as never_started
from steps._processes import process_token, token_alive
from steps._runs import Status, end_run, end_stopped_killed

HOST = socket.gethostname()
LOCAL_SCHEMES = ("", "file", "sqlite")  # one machine: a process token tells liveness, no heartbeat needed
HEARTBEAT_SECONDS = 10.0
STALE_SECONDS = 60.0  # six missed heartbeats: a process on another host is taken for dead


def liveness_tags() -> dict[str, str]:
    """Return the tags that let other processes judge whether this one's run is alive."""
    return {names.TAG_HOST: HOST, names.TAG_PROCESS: process_token(), names.TAG_HEARTBEAT: str(int(time.time()))}


@dataclass(frozen=True)
class LivenessTags:
    """What liveness needs of a run: its status and its process tags."""

    status: str
    host: str | None = None
    process: str | None = None
    heartbeat: float | None = None
    sweep: str | None = None  # the sweep that launched it, if any


def alive(run: LivenessTags, now: float, this_host: str, sweep_alive=lambda run_id: True) -> bool:
    """Return whether a RUNNING run's process still runs: by its token on this host, by a fresh
    heartbeat on another; an untagged run is as alive as its sweep, and never dead without one."""
    if run.status != Status.RUNNING:
        return False
    if run.host is None or run.process is None:
        return sweep_alive(run.sweep) if run.sweep else True
    if run.host == this_host:
        return token_alive(run.process)
    return run.heartbeat is not None and now - run.heartbeat <= STALE_SECONDS


def remote_store(uri: str | None = None) -> bool:
    return urllib.parse.urlparse(uri or mlflow.get_tracking_uri()).scheme not in LOCAL_SCHEMES


class Heartbeat:
    """Refresh the run's heartbeat tag every HEARTBEAT_SECONDS while the block runs (remote stores
    only: on a local store every process is on this host and its token says whether it lives)."""

    def __init__(self, run_id: str, seconds: float = HEARTBEAT_SECONDS):
        self.run_id, self.seconds = run_id, seconds
        self._stop = threading.Event()
        self._thread = None

    def _beat(self) -> None:
        client = mlflow.MlflowClient()
        while not self._stop.wait(self.seconds):
            with contextlib.suppress(Exception):  # the store is away: the step's own calls will say so
                client.set_tag(self.run_id, names.TAG_HEARTBEAT, str(int(time.time())))

    def __enter__(self) -> Heartbeat:
        if remote_store():
            self._thread = threading.Thread(target=self._beat, name="heartbeat", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()


def liveness_of(run) -> LivenessTags:
    """Return the run's status and process tags."""
    tags = run.data.tags
    beat = tags.get(names.TAG_HEARTBEAT)
    return LivenessTags(
        run.info.status,
        tags.get(names.TAG_HOST),
        tags.get(names.TAG_PROCESS),
        float(beat) if beat and beat.isdigit() else None,
        tags.get(names.TAG_SWEEP),
    )


class Liveness:
    """Whether a run's process is alive; answers are kept for `ttl` seconds (one poll)."""

    def __init__(self, client, ttl: float = 2.0):
        self.client, self.ttl = client, ttl
        self._cache: dict[str, tuple[float, bool]] = {}

    def __call__(self, run_id: str) -> bool:
        now = time.monotonic()
        cached = self._cache.get(run_id)
        if cached and now - cached[0] < self.ttl:
            return cached[1]
        try:
            run = self.client.get_run(run_id)
        except MlflowException as err:
            if err.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise
            verdict = False
        else:
            verdict = alive(liveness_of(run), time.time(), HOST, sweep_alive=self)
        self._cache[run_id] = (now, verdict)
        return verdict

    def judge(self, run) -> bool:
        return alive(liveness_of(run), time.time(), HOST, sweep_alive=self)


class Claims:
    """This holder's claims, as experiment tags `claim.<key>.<holder>` (madness.coordination)."""

    def __init__(self, client, holder: str, liveness: Liveness):
        self.client, self.holder, self.alive = client, holder, liveness
        self.held: dict[tuple[str, str], int] = {}

    def _tag(self, key: str, holder: str) -> str:
        return f"{names.CLAIM_PREFIX}{key}.{holder}"

    def others(self, experiment_id: str, key: str) -> dict[str, str]:
        """Live contenders' claim values by holder; the claims of dead holders are removed."""
        prefix = f"{names.CLAIM_PREFIX}{key}."
        tags = self.client.get_experiment(experiment_id).tags
        found = {}
        for tag, value in tags.items():
            holder = tag[len(prefix) :] if tag.startswith(prefix) else None
            if not holder or holder == self.holder:
                continue
            if self.alive(holder):
                found[holder] = value
            else:
                self._forget(experiment_id, tag)
        return found

    def _forget(self, experiment_id: str, tag: str) -> None:
        with contextlib.suppress(MlflowException):  # another contender removed it first
            self.client.delete_experiment_tag(experiment_id, tag)

    def enter(self, experiment_id: str, key: str) -> None:
        if (experiment_id, key) in self.held:
            return
        tag = self._tag(key, self.holder)
        self.client.set_experiment_tag(experiment_id, tag, coordination.CHOOSING)
        ticket = coordination.next_ticket(self.others(experiment_id, key).values())
        self.client.set_experiment_tag(experiment_id, tag, str(ticket))
        self.held[(experiment_id, key)] = ticket

    def holder_ahead(self, experiment_id: str, key: str) -> str | None:
        """Enter if not yet; the live holder to wait for, or None when this holder goes."""
        self.enter(experiment_id, key)
        return coordination.holder_ahead(self.holder, self.held[(experiment_id, key)], self.others(experiment_id, key))

    def release(self, experiment_id: str, key: str) -> None:
        if self.held.pop((experiment_id, key), None) is not None:
            self._forget(experiment_id, self._tag(key, self.holder))

    def release_all(self) -> None:
        for experiment_id, key in list(self.held):
            self.release(experiment_id, key)

    def wait_until_first(self, experiment_id: str, key: str, poll: float, on_wait=None) -> None:
        """Block until this holder goes first for `key` (a short critical section, e.g. registering)."""
        shown = None
        while (holder := self.holder_ahead(experiment_id, key)) is not None:
            if on_wait and holder != shown:
                on_wait(holder)
                shown = holder
            _lifecycle.wait(poll)


def end_orphans(client, experiment_ids: list[str], liveness: Liveness, by: str) -> list[str]:
    """End FAILED every RUNNING run of these experiments whose process is gone, or whose entry point
    never started and whose creator is gone (steps._never_started); return their ids."""
    end_stopped_killed(client, experiment_ids)
    ended = []
    for run in client.search_runs(sorted(set(experiment_ids)), "attributes.status = 'RUNNING'", max_results=1000):
        if not liveness.judge(run):
            why = "the process that ran it was gone"
        elif (why := never_started.abandoned(run, liveness, remote_store(), time.time())) is None:
            continue
        end_run(client, run.info.run_id, Status.FAILED, f"{by}: {why}")
        ended.append(run.info.run_id)
    return ended
