"""Run a real command with a file or folder it cannot write, or on a disk too small for its output.

As root, permission bits stop no write, so the path is bind-mounted read-only (and the small disk
mounted, a tmpfs) in a private mount namespace (`unshare -m`) that only the command sees. As
another user, a read-only path is one whose write bits are taken away while the command runs.
Where neither works the tests skip with the reason, except under CI=true, where that is a failure.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

# What the steps say of a path they cannot write, by how it was made read-only.
READ_ONLY_FS = "is on a read-only file system"
NO_PERMISSION = "is not writable (permission denied)"

_MOUNT_RO = 'mount --bind -o ro "$0" "$0" && exec "$@"'
# The listing runs inside the namespace: the tmpfs, and what the command left in it, vanish with it.
_MOUNT_SMALL = 'mount -t tmpfs -o size="$1" tmpfs "$0" && shift && "$@"; code=$?; ls -A "$0" > "$LISTING"; exit $code'


@functools.cache
def _can_mount() -> str | None:
    """None when `unshare -m` can bind-mount read-only here, else why not."""
    if shutil.which("unshare") is None:
        return "unshare (util-linux) is not installed"
    with tempfile.TemporaryDirectory() as folder:
        try:
            probe = subprocess.run(
                ["unshare", "-m", "sh", "-c", _MOUNT_RO, folder, "touch", f"{folder}/probe"],
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as err:
            return f"unshare -m failed: {err}"
        if "Read-only file system" in probe.stderr:
            return None
        return f"a read-only bind mount in a private namespace did not stop a write: {(probe.stderr or 'touch succeeded').strip()}"


def _unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason}; CI must run the unwritable-path tests (as root with unshare, or as a non-root user)")
    pytest.skip(reason)


def read_only_reason() -> str:
    """What a step says of a path made read-only by run_read_only; skips (fails under CI) if none can be."""
    if os.geteuid() == 0:
        problem = _can_mount()
        if problem:
            _unavailable(problem)
        return READ_ONLY_FS
    return NO_PERMISSION


def run_read_only(path: Path, args: list[str], **kwargs) -> subprocess.CompletedProcess:
    """subprocess.run(args, **kwargs) with `path` (a file or folder) read-only for the command alone."""
    if read_only_reason() == READ_ONLY_FS:
        return subprocess.run(["unshare", "-m", "sh", "-c", _MOUNT_RO, str(path), *args], **kwargs, check=False)
    mode = path.stat().st_mode
    path.chmod(mode & ~0o222)
    try:
        return subprocess.run(args, **kwargs, check=False)
    finally:
        path.chmod(mode)


def run_on_small_disk(
    folder: Path, size: str, args: list[str], env: dict, **kwargs
) -> tuple[subprocess.CompletedProcess, list[str]]:
    """subprocess.run(args) with `folder` a fresh file system of `size` (e.g. "8k"); also returns the
    names the command left in it."""
    if os.geteuid() != 0:
        _unavailable("a full disk needs a tmpfs mount, which needs root")
    problem = _can_mount()
    if problem:
        _unavailable(problem)
    with tempfile.TemporaryDirectory() as scratch:
        listing = Path(scratch) / "listing"
        result = subprocess.run(
            ["unshare", "-m", "sh", "-c", _MOUNT_SMALL, str(folder), size, *args],
            env={**env, "LISTING": str(listing)},
            **kwargs,
            check=False,
        )
        left = listing.read_text().split() if listing.exists() else None
    assert left is not None, f"the small disk was not mounted: {result.stderr[-2000:]}"
    return result, left
