"""Facts about this machine's processes, read through psutil: a process's token (pid and start
time, so that a reused pid is not mistaken for it), whether it still runs, and who launched it."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import psutil

SHELLS = frozenset({"sh", "bash", "dash", "zsh", "ksh"})
ENDED = (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD)


def process_token(pid: int | None = None) -> str:
    """Return '<pid>:<start time>' of the process (this one by default); ':' alone after the pid
    when the process is gone."""
    pid = os.getpid() if pid is None else pid
    try:
        started = f"{psutil.Process(pid).create_time():.2f}"
    except psutil.Error:
        started = ""
    return f"{pid}:{started}"


def token_alive(token: str) -> bool:
    """Return whether the process the token names still runs (a zombie has ended)."""
    pid_text, _, started = token.partition(":")
    try:
        process = psutil.Process(int(pid_text))
        return (not started or f"{process.create_time():.2f}" == started) and process.status() not in ENDED
    except (ValueError, psutil.NoSuchProcess):
        return False
    except psutil.AccessDenied:
        return True  # another user's process: it exists


def gone(tokens) -> str | None:
    """Return the first of these tokens whose process has ended, or None while all run."""
    return next((token for token in tokens if not token_alive(token)), None)


def parent_pid(pid: int) -> int | None:
    """Return the pid of the process's parent, or None when the process is gone."""
    try:
        return psutil.Process(pid).ppid()
    except psutil.Error:
        return None


def command_line(pid: int) -> list[str]:
    """Return the process's command line, or [] when it is gone or hidden."""
    try:
        return psutil.Process(pid).cmdline()
    except psutil.Error:
        return []


def _is_shell(command: list[str]) -> bool:
    return bool(command) and Path(command[0]).name.lstrip("-") in SHELLS


def is_shell_wrapper(command: list[str]) -> bool:
    """Return whether the command is `sh -c '<command>'`, as MLflow runs an entry point's command:
    such a shell lives only as long as its command."""
    return _is_shell(command) and "-c" in command[1:]


def is_mlflow_run(command: list[str]) -> bool:
    """Return whether the command is `mlflow run ...`, however it was started (its script, `python -m mlflow`)."""
    words = [Path(part).name for part in command[:4]]
    return "mlflow" in words and "run" in command[1:4]


def launcher_chain(pid: int | None = None, parent=parent_pid, command=command_line) -> list[int]:
    """Return the pids of whoever waits for the process: its parent and, past `sh -c` wrappers, the
    first real launcher (`mlflow run`, a sweep, a shell script, pytest). An interactive shell is
    not one: a job left running in the background of a shell that exits is meant to go on (and a
    terminal's hang-up is a signal of its own). Empty when the process was orphaned (parent is init)."""
    chain = []
    current = parent(os.getpid() if pid is None else pid)
    while current is not None and current > 1:
        cmd = command(current)
        if _is_shell(cmd) and all(arg.startswith("-") and arg != "-c" for arg in cmd[1:]):
            break  # an interactive shell: no script, no -c
        chain.append(current)
        if not is_shell_wrapper(cmd):
            break
        current = parent(current)
    return chain


def stop_mlflow_children() -> None:
    """Ask every entry point MLflow runs locally from this process (a child process with
    MLFLOW_RUN_ID set) to stop, as MLflow's own `SubmittedRun.cancel` does: each ends its run
    KILLED and exits."""
    for child in psutil.Process().children():
        with contextlib.suppress(psutil.Error):
            if "MLFLOW_RUN_ID" in child.environ():
                child.terminate()
