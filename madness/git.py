"""Git, asked one way: the commit a run comes from, the exact state of its working tree, worktrees."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

from madness import names


def output(args: list[str], cwd: Path | str) -> bytes:
    """Return what `git ARGS` prints in `cwd`; raise CalledProcessError when it fails, OSError without git."""
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, check=True).stdout


def text(args: list[str], cwd: Path | str) -> str:
    """Return what `git ARGS` prints in `cwd`, decoded and stripped; raise as `output` does."""
    return output(args, cwd).decode().strip()


def head(cwd: Path | str) -> str:
    """Return the commit checked out in `cwd`."""
    return text(["rev-parse", "HEAD"], cwd)


def is_dirty(cwd: Path | str) -> bool:
    """Return whether the working tree in `cwd` differs from its commit (untracked files count)."""
    return text(["status", "--porcelain"], cwd) != ""


def files(cwd: Path | str) -> list[str]:
    """Return the tracked and untracked files, ignored ones (stores, .venv, outputs, data) left out."""
    return [name for name in output(["ls-files", "-co", "--exclude-standard", "-z"], cwd).decode().split("\0") if name]


def state(path: Path | str = ".") -> dict[str, str]:
    """Return whether the working tree differs from its commit, and a hash of exactly what it holds.

    The hash covers the commit, the diff against it and every untracked, non-ignored file, so two
    runs with equal `git.state` ran the same code even when the tree was dirty. Empty outside git.
    """
    try:
        commit = output(["rev-parse", "HEAD"], path)
        diff = output(["diff", "HEAD", "--binary"], path)
        untracked = [
            name for name in output(["ls-files", "--others", "--exclude-standard", "-z"], path).split(b"\0") if name
        ]
    except (OSError, subprocess.CalledProcessError):
        return {}
    digest = hashlib.sha256(commit + b"\0" + diff)
    for name in sorted(untracked):
        file = Path(path) / name.decode()
        digest.update(b"\0" + name + b"\0" + (file.read_bytes() if file.is_file() else b""))
    return {names.TAG_DIRTY: "true" if diff or untracked else "false", names.TAG_STATE: digest.hexdigest()}
