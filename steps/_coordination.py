"""Against the tracking store: whether a run's process is alive (liveness_tags, heartbeat, Liveness),
sweeps taking turns on the same pair or ingest (Claims), and the ending of orphaned runs (end_orphans)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import socket
import threading
import time
import urllib.parse

import mlflow
from mlflow.exceptions import MlflowException

from madness import names
from madness.names import Status
from steps import _lifecycle
from steps import _never_started as never_started
from steps._processes import process_token, token_alive
from steps._runs import end_killed, end_run

HOST = socket.gethostname()
LOCAL_SCHEMES = ("", "file", "sqlite")  # one machine: a process token tells liveness, no heartbeat needed
HEARTBEAT_SECONDS = 10.0
STALE_SECONDS = 60.0  # six missed heartbeats: a process on another host is taken for dead


def liveness_tags() -> dict[str, str]:
    """Return the tags that let other processes judge whether this one's run is alive."""
    return {names.TAG_HOST: HOST, names.TAG_PROCESS: process_token(), names.TAG_HEARTBEAT: str(int(time.time()))}


def remote_store(uri: str | None = None) -> bool:
    """Return whether the tracking store may be shared with other hosts (anything but SQLite or files)."""
    return urllib.parse.urlparse(uri or mlflow.get_tracking_uri()).scheme not in LOCAL_SCHEMES


@contextlib.contextmanager
def heartbeat(run_id: str, seconds: float = HEARTBEAT_SECONDS):
    """Refresh the run's heartbeat tag every `seconds` while the block runs, and ask the step to stop
    once its run was ended by another process: a sweep run as one Kubernetes Job whose `mlflow run`
    was cancelled (MLflow ends the run FAILED and deletes the Job, not its pod), or a run another
    host judged dead. Remote stores only: on a local store every process is on this host and its
    token says whether it lives."""
    done = threading.Event()

    def beat() -> None:
        client = mlflow.MlflowClient()
        while not done.wait(seconds):
            with contextlib.suppress(Exception):  # the store is away: the step's own calls will say so
                client.set_tag(run_id, names.TAG_HEARTBEAT, str(int(time.time())))
                status = client.get_run(run_id).info.status
                if status != Status.RUNNING and not done.is_set():
                    _lifecycle.request_stop(f"stopped: its run {run_id} was ended {status} by another process")

    if remote_store():
        threading.Thread(target=beat, name="heartbeat", daemon=True).start()
    try:
        yield
    finally:
        done.set()


class Liveness:
    """Tell whether a RUNNING run's process still runs; answers by run id are kept for `ttl` seconds (one poll)."""

    def __init__(self, client, ttl: float = 2.0):
        self.client, self.ttl = client, ttl
        self._cache: dict[str, tuple[float, bool]] = {}

    def __call__(self, run_id: str) -> bool:
        """Return whether the run with this id is alive; one that does not exist is not."""
        now = time.monotonic()
        checked, verdict = self._cache.get(run_id, (float("-inf"), False))
        if now - checked >= self.ttl:
            try:
                verdict = self.judge(self.client.get_run(run_id))
            except MlflowException as err:
                if err.error_code != "RESOURCE_DOES_NOT_EXIST":
                    raise
                verdict = False
            self._cache[run_id] = (now, verdict)
        return verdict

    def judge(self, run) -> bool:
        """Return whether a RUNNING run's process still runs: by its token on this host, by a heartbeat
        at most STALE_SECONDS old on another. A run its step has not tagged yet is as alive as the
        sweep that launched it, and never dead without one."""
        tags = run.data.tags
        host, process = tags.get(names.TAG_HOST), tags.get(names.TAG_PROCESS)
        if run.info.status != Status.RUNNING:
            return False
        if host is None or process is None:
            return self(tags[names.TAG_SWEEP]) if names.TAG_SWEEP in tags else True
        if host == HOST:
            return token_alive(process)
        beat = tags.get(names.TAG_HEARTBEAT, "")
        return beat.isdigit() and time.time() - int(beat) <= STALE_SECONDS


CHOOSING = "choosing"


def claim_key(identity: dict) -> str:
    """Return a short stable name for what is claimed (a pair's params, commit, tree state and data)."""
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]


def tickets(claims: dict[str, str]) -> dict[str, int]:
    """Return the tickets among claim values by holder (a holder still choosing has none)."""
    return {holder: int(value) for holder, value in claims.items() if value.isdigit()}


class Claims:
    """This holder's claims, so that two sweeps wanting the same pair (or ingest) do not both run it:
    Lamport's bakery ("A New Solution of Dijkstra's Concurrent Programming Problem", 1974) on
    experiment tags `claim.<key>.<holder run id>`.

    Each contender writes `choosing`, then a ticket one above every ticket it saw, and reads the
    others'; the lowest (ticket, holder) goes first, the others wait for it. The bakery needs only tag
    writes that later reads see (why nothing simpler would do: docs/reliability.md, Two sweeps at once).
    Claims of dead holders are removed (see Liveness)."""

    def __init__(self, client, holder: str, liveness: Liveness):
        self.client, self.holder, self.alive = client, holder, liveness
        self.held: dict[tuple[str, str], int] = {}  # (experiment id, key) -> this holder's ticket

    def _tag(self, key: str) -> str:
        return f"{names.CLAIM_PREFIX}{key}.{self.holder}"

    def others(self, experiment_id: str, key: str) -> dict[str, str]:
        """Return live contenders' claim values by holder; remove the claims of dead holders."""
        prefix = f"{names.CLAIM_PREFIX}{key}."
        found = {}
        for tag, value in self.client.get_experiment(experiment_id).tags.items():
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
        """Take a ticket for `key`, unless this holder has one."""
        if (experiment_id, key) in self.held:
            return
        tag = self._tag(key)
        self.client.set_experiment_tag(experiment_id, tag, CHOOSING)
        ticket = 1 + max(tickets(self.others(experiment_id, key)).values(), default=0)
        self.client.set_experiment_tag(experiment_id, tag, str(ticket))
        self.held[(experiment_id, key)] = ticket

    def holder_ahead(self, experiment_id: str, key: str) -> str | None:
        """Enter if not yet; return the live holder to wait for, or None when this holder goes. A
        contender still choosing may yet pick a lower ticket: it is waited for until it has one."""
        self.enter(experiment_id, key)
        others = self.others(experiment_id, key)
        if choosing := min((holder for holder, value in others.items() if value == CHOOSING), default=None):
            return choosing
        mine = (self.held[(experiment_id, key)], self.holder)
        first = min(((ticket, holder) for holder, ticket in tickets(others).items()), default=mine)
        return first[1] if first < mine else None

    def release(self, experiment_id: str, key: str) -> None:
        """Remove this holder's claim on `key`, if it holds one."""
        if self.held.pop((experiment_id, key), None) is not None:
            self._forget(experiment_id, self._tag(key))

    def release_all(self) -> None:
        """Remove every claim this holder holds."""
        for experiment_id, key in list(self.held):
            self.release(experiment_id, key)


def end_orphans(client, experiment_ids: list[str], liveness: Liveness, by: str) -> list[str]:
    """End FAILED every RUNNING run of these experiments whose process is gone, or whose entry point
    never started and whose creator is gone (steps._never_started), say so in one line, and return
    their ids. End KILLED first the FAILED ones a stopped step tagged `stopped` (steps._runs.end_killed)."""
    experiments = sorted(set(experiment_ids))
    stopped = f"attributes.status = 'FAILED' and tags.`{names.TAG_STOPPED}` LIKE '%'"
    for run in client.search_runs(experiments, stopped, max_results=1000):
        end_killed(client, run.info.run_id)
    ended = []
    for run in client.search_runs(experiments, "attributes.status = 'RUNNING'", max_results=1000):
        if not liveness.judge(run):
            why = "the process that ran it was gone"
        elif (why := never_started.abandoned(run, liveness, remote_store(), time.time())) is None:
            continue
        end_run(client, run.info.run_id, Status.FAILED, f"{by}: {why}")
        ended.append(run.info.run_id)
    if ended:
        print(
            f"ended FAILED {len(ended)} run(s) left RUNNING by processes that are gone: {', '.join(ended)}", flush=True
        )
    return ended
