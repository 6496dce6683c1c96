"""Several processes, one tracking store: is a run's process still alive, and who trains a pair first.

Liveness. Every step tags its run with its host and a token of its process (pid and start time,
so a reused pid is not mistaken for it) and, against a remote store, refreshes a heartbeat. A
RUNNING run is alive while its process runs (same host) or its heartbeat is fresh (another host).
A run not yet tagged (its environment still building) is as alive as the sweep that launched it.

Claims. Two sweeps that want the same pair must not both train it. Tracking stores offer no
compare-and-set that every backend shares, but tags are plain registers, and Lamport's bakery
needs nothing more: each contender writes its own claim (`choosing`, then a ticket one above every
ticket it saw) and reads the others'; the lowest (ticket, holder) goes first, the others wait for
it to finish and then reuse its run, or go in its place when it fails. Claims of dead holders
are ignored. (Lamport, "A New Solution of Dijkstra's Concurrent Programming Problem", 1974.)
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

CHOOSING = "choosing"
HEARTBEAT_SECONDS = 10.0
STALE_SECONDS = 60.0  # six missed heartbeats: a holder on another host is taken for dead
TEMP_PREFIX = "madness-"
SHELLS = frozenset({"sh", "bash", "dash", "zsh", "ksh"})


# --- liveness ---


def _stat(pid: int) -> list[str] | None:
    """/proc/<pid>/stat from field 3 on (Linux); the command name before ")" may hold spaces."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot, or None where unknown."""
    stat = _stat(pid)
    return stat[19] if stat else None  # field 22


def _ended(pid: int) -> bool:
    """A zombie has ended; it only waits for its parent to collect its exit status."""
    stat = _stat(pid)
    return bool(stat) and stat[0] in ("Z", "X")


def process_token(pid: int | None = None) -> str:
    pid = os.getpid() if pid is None else pid
    return f"{pid}:{_start_time(pid) or ''}"


def parent_pid(pid: int) -> int | None:
    stat = _stat(pid)
    return int(stat[1]) if stat else None  # field 4


def command_line(pid: int) -> list[str]:
    try:
        return [part for part in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0") if part]
    except OSError:
        return []


def is_shell(command: list[str]) -> bool:
    return bool(command) and Path(command[0]).name.lstrip("-") in SHELLS


def is_shell_wrapper(command: list[str]) -> bool:
    """`bash -c '<command>'`: how MLflow runs an entry point's command; it lives only as long as the command."""
    return is_shell(command) and "-c" in command[1:]


def is_interactive_shell(command: list[str]) -> bool:
    """A shell reading commands from a person (no script, no -c): not something that waits for a step."""
    return is_shell(command) and all(arg.startswith("-") for arg in command[1:]) and "-c" not in command[1:]


def is_mlflow_run(command: list[str]) -> bool:
    """`mlflow run ...`, however it was started (its script, `python -m mlflow`)."""
    words = [Path(part).name for part in command[:4]]
    return "mlflow" in words and "run" in command[1:4]


def launcher_chain(pid: int | None = None, parent=parent_pid, command=command_line) -> list[int]:
    """Whoever waits for this process: its parent and, past `sh -c` wrappers, the first real
    launcher (`mlflow run`, a sweep, a shell script, pytest). An interactive shell is not one: a job left running
    in the background of a shell that exits is meant to go on (and a terminal's hang-up is a signal
    of its own). Empty when the process was already orphaned (parent is init)."""
    chain = []
    current = parent(os.getpid() if pid is None else pid)
    while current is not None and current > 1:
        cmd = command(current)
        if is_interactive_shell(cmd):
            break
        chain.append(current)
        if not is_shell_wrapper(cmd):
            break
        current = parent(current)
    return chain


def gone(tokens) -> str | None:
    """The first of these process tokens whose process has ended, or None while all live."""
    return next((token for token in tokens if not token_alive(token)), None)


def token_alive(token: str) -> bool:
    pid_text, _, started = token.partition(":")
    try:
        pid = int(pid_text)
        os.kill(pid, 0)
    except (ValueError, ProcessLookupError):
        return False
    except PermissionError:
        pass  # another user's process: it exists
    return (not started or _start_time(pid) == started) and not _ended(pid)


def temp_prefix(token: str) -> str:
    """A temporary folder's name starts with its owner's process token, so that a folder a crashed
    process left behind can be told from one in use."""
    pid, _, started = token.partition(":")
    return f"{TEMP_PREFIX}{pid}-{started}-"


def temp_owner(name: str) -> str | None:
    match = re.match(rf"{TEMP_PREFIX}(\d+)-(\d+)-", name)
    return f"{match[1]}:{match[2]}" if match else None


@dataclass(frozen=True)
class Seen:
    """What liveness needs of a run: its status and its process tags."""

    status: str
    host: str | None = None
    process: str | None = None
    heartbeat: float | None = None
    sweep: str | None = None  # the sweep that launched it, if any


def alive(run: Seen, now: float, this_host: str, sweep_alive=lambda run_id: True) -> bool:
    if run.status != "RUNNING":
        return False
    if run.host is None or run.process is None:
        return sweep_alive(run.sweep) if run.sweep else True  # unknown: never taken for dead
    if run.host == this_host:
        return token_alive(run.process)
    return run.heartbeat is not None and now - run.heartbeat <= STALE_SECONDS


# --- claims ---


def claim_key(identity: dict) -> str:
    """A short stable name for what is claimed (a pair's params, commit, tree state and data)."""
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]


def ticket_of(value: str) -> int | None:
    return int(value) if value.isdigit() else None


def next_ticket(values) -> int:
    return 1 + max((t for t in map(ticket_of, values) if t is not None), default=0)


def blocker(holder: str, ticket: int, others: dict[str, str]) -> str | None:
    """The live contender this one must wait for (`others`: holder -> claim value), or None: go.

    A contender still choosing may yet pick a lower ticket, so it blocks until it has one.
    """
    choosing = sorted(h for h, value in others.items() if value == CHOOSING)
    if choosing:
        return choosing[0]
    ahead = sorted(
        (t, h) for h, value in others.items() if (t := ticket_of(value)) is not None and (t, h) < (ticket, holder)
    )
    return ahead[0][1] if ahead else None
