"""Rerunning a past run: where its code is, what to pass it, and whether the rerun matched.

Pure helpers for `steps/reproduce.py`: no MLflow import; git is called through madness.git.
"""

from __future__ import annotations

import math
import os
import re
import shlex
import shutil
import subprocess
import tempfile
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

import yaml

from madness import git, names
from madness.errors import UserError

MLPROJECT_FILE = "MLproject"
WORKTREE_PREFIX = "madness-reproduce-"

_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_SCP_LIKE = re.compile(r"^[\w.-]+@[\w.-]+:")  # git@github.com:owner/repo.git


# --- where the code is ---


@dataclass(frozen=True)
class Source:
    """A run's code location: a local path (a repository, a folder in one, or a script) or a git URL."""

    local: bool
    location: str  # a filesystem path when local, else the URL as recorded
    subdirectory: str = ""  # MLflow's `uri#subdirectory`


def parse_source(source_name: str) -> Source:
    """Read `mlflow.source.name`: `file:///repo#sub` and `/repo/steps/train.py` are local, other URLs remote.

    MLflow itself treats any URI naming an existing folder as local, even `file://` ones: given a
    `version` it would check that commit out in that very folder, so local ones must stay local here.
    """
    name, _, subdirectory = source_name.strip().partition("#")
    if name.startswith("file://"):
        return Source(True, unquote(urlparse(name).path), subdirectory)
    if _URL.match(name) or _SCP_LIKE.match(name):
        return Source(False, name, subdirectory)
    return Source(True, name, subdirectory)


def project_subdirectory(path: Path | str, root: Path) -> str:
    """Return the folder holding MLproject, relative to `root`: searched upwards from `path`, '' at the top."""
    path = Path(path).resolve()
    root = root.resolve()
    folder = path if path.is_dir() else path.parent
    while folder != root and root in folder.parents:
        if (folder / MLPROJECT_FILE).is_file():
            return folder.relative_to(root).as_posix()
        folder = folder.parent
    return ""


def find_repository(candidates: list[Path | str], commit: str) -> tuple[Path, str]:
    """Return the first candidate (a folder or a file, maybe since deleted: its nearest existing folder
    counts) inside a git repository that has `commit`: (repository top, project subfolder); raise
    UserError when none is."""
    for candidate in candidates:
        folder = Path(candidate).absolute()
        while not folder.is_dir() and folder != folder.parent:
            folder = folder.parent
        try:
            root = Path(git.text(["rev-parse", "--show-toplevel"], folder))
            git.text(["cat-file", "-e", f"{commit}^{{commit}}"], root)
        except (OSError, subprocess.CalledProcessError):
            continue  # outside git, or a repository without the commit
        return root, project_subdirectory(candidate, root)
    raise UserError(
        f"commit {commit} is in no repository at {', '.join(map(str, candidates))}: run from a clone that has it (git fetch)"
    )


@contextmanager
def worktree(repo: Path, commit: str):
    """Check `commit` out, detached, in a new worktree `<temporary folder>/<repo name>`; the repo's
    own tree is untouched. Both are removed on exit, also on an error or an interrupt (an
    interrupted `git worktree add` is pruned)."""
    parent = Path(tempfile.mkdtemp(prefix=WORKTREE_PREFIX))
    path = parent / Path(repo).name
    try:
        try:
            git.text(["worktree", "add", "--detach", str(path), commit], repo)
        except subprocess.CalledProcessError as err:
            last = (err.stderr or "").strip().splitlines()
            raise UserError(
                f"cannot check out commit {commit} of {repo} in a temporary worktree: {last[-1] if last else err}"
            ) from None
        yield path
    finally:  # never raises: the files go, then git's bookkeeping of them
        with suppress(OSError, subprocess.CalledProcessError):
            git.text(["worktree", "remove", "--force", "--force", str(path)], repo)
        shutil.rmtree(parent, ignore_errors=True)
        with suppress(OSError, subprocess.CalledProcessError):
            git.text(["worktree", "prune"], repo)


# --- what to pass ---


def unquote_params(params: dict[str, str], shell_quoted: bool) -> dict[str, str]:
    """Return the values as given. `mlflow run` logs each one shell-quoted (`''` for an empty string,
    `'a b'` for a space); a step started directly logs them as given."""
    return {key: _unquoted(value) for key, value in params.items()} if shell_quoted else dict(params)


def _unquoted(value: str) -> str:
    with suppress(ValueError):  # not valid shell words, or not one word: as given
        (word,) = shlex.split(value)
        if shlex.quote(word) == value:
            return word
    return value


def select_params(params: dict[str, str], mlproject_text: str, entry: str) -> tuple[dict[str, str], list[str]]:
    """Return the params the entry point declares in MLproject, and the names of the others, which are left out
    (MLflow would append them to its command); raise UserError when MLproject has no such entry point."""
    points = (yaml.safe_load(mlproject_text) or {}).get("entry_points") or {}
    if entry not in points:
        raise UserError(
            f"entry point {entry!r} is not in MLproject at that commit; it has: {', '.join(sorted(points)) or 'none'}"
        )
    declared = (points[entry] or {}).get("parameters") or {}
    return {k: v for k, v in params.items() if k in declared}, sorted(k for k in params if k not in declared)


def choose_env_manager(given: str, tags: dict[str, str]) -> str:
    """Return `given` if set; else the one the run's tags record (MLflow tags only non-local ones); else local."""
    chosen = given.strip() or tags.get(names.TAG_PROJECT_ENV) or tags.get(names.TAG_ENV_MANAGER) or "local"
    if chosen not in names.ENV_MANAGERS:
        raise UserError(f"cannot rerun with env_manager {chosen!r}; accepted: {', '.join(names.ENV_MANAGERS)}")
    return chosen


def absolute_tracking_uri(uri: str, cwd: Path) -> str:
    """Return a relative store (sqlite:///mlflow.db, mlruns) made absolute: the rerun's cwd is the worktree."""
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        return "sqlite:///" + str((Path(cwd) / uri[len("sqlite:///") :]).resolve())
    if uri.startswith("file:") and not uri.startswith("file:/"):
        return (Path(cwd) / uri[len("file:") :]).resolve().as_uri()
    if "://" not in uri and uri and not uri.startswith(("databricks", "uc")) and not Path(uri).is_absolute():
        return str((Path(cwd) / uri).resolve())
    return uri


def link_inputs(params: dict[str, str], project: Path, rerun_project: Path, scratch: Path) -> list[tuple[Path, Path]]:
    """Let a rerun in `rerun_project` see the folders a relative param names; return the (link,
    target) pairs made.

    `data=data/mmlm2024` is git-ignored, so a fresh checkout lacks it; `data=../shared/...` points
    beside the project. Each existing folder so named from `project` but missing from `rerun_project`
    is linked, if the link falls inside `scratch` (the temporary folder holding the worktree).
    """
    links = []
    for value in params.values():
        if not value or _URL.match(value) or ":" in value or os.path.isabs(value):
            continue
        target = Path(os.path.normpath(Path(project) / value))
        link = Path(os.path.normpath(Path(rerun_project) / value))
        if target.is_dir() and not os.path.lexists(link) and Path(scratch) in link.parents:
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(target.resolve(), target_is_directory=True)
            links.append((link, target.resolve()))
    return links


# --- did it reproduce ---

Points = list[tuple[int, int, float]]  # (step, timestamp, value), as MLflow's metric history holds them


def by_step(points: Points) -> dict[int, float]:
    """Return the value at each step; a step logged twice keeps its latest value, as MLflow's own view does."""
    return {step: value for step, _, value in sorted(points, key=lambda p: (p[0], p[1]))}


def _distance(a: float, b: float) -> float:
    if a == b or (math.isnan(a) and math.isnan(b)):  # equal infinities too; NaN matches NaN only
        return 0.0
    return math.inf if math.isnan(a) or math.isnan(b) else abs(b - a)


@dataclass(frozen=True)
class Row:
    """One metric of the two runs: steps compared, each run's last value, their largest difference, a note."""

    metric: str
    steps: int  # steps compared: 1 for a metric logged once
    original: float | None  # value at the last step, None when the run lacks the metric
    rerun: float | None
    difference: float | None  # largest |rerun - original| over the steps; None when a side is missing
    note: str = ""

    def ok(self, tolerance: float) -> bool:
        """Return whether both runs have the metric at the same steps, never more than `tolerance` apart."""
        return self.difference is not None and self.difference <= tolerance


def compare(original: dict[str, Points], rerun: dict[str, Points]) -> list[Row]:
    """Return one row per metric of either run, sorted by name; histories are compared step by step."""
    rows = []
    for key in sorted(set(original) | set(rerun)):
        a, b = by_step(original.get(key, [])), by_step(rerun.get(key, []))
        only = sorted(set(a) ^ set(b))  # steps one side lacks
        difference, steps = None, len(set(a) | set(b))
        if not a or not b:
            note = "missing in the " + ("rerun" if a else "original")
        elif only:
            note = f"step {only[0]} missing in the {'rerun' if only[0] in a else 'original'} ({len(only)} steps differ)"
        else:
            worst = max(a, key=lambda s: _distance(a[s], b[s]))
            difference = _distance(a[worst], b[worst])
            note = f"worst at step {worst}" if len(a) > 1 and difference > 0 else ""
        rows.append(Row(key, steps, a[max(a)] if a else None, b[max(b)] if b else None, difference, note))
    return rows


def _number(value: float | None) -> str:
    return "-" if value is None else repr(value)  # repr: the shortest text that gives back the same bits


def table(rows: list[Row], tolerance: float) -> str:
    """Return the comparison as aligned text: metric, steps, original, rerun, difference, and a verdict."""
    lines = [("metric", "steps", "original", "rerun", "difference", "result")]
    lines += [
        (
            row.metric,
            str(row.steps),
            _number(row.original),
            _number(row.rerun),
            "missing" if row.difference is None else f"{row.difference:.3g}",  # .3g writes 0.0 as 0
            f"{'ok' if row.ok(tolerance) else 'DIFFERS'} {row.note}".strip(),
        )
        for row in rows
    ]
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip() for line in lines)


def verdict(rows: list[Row], tolerance: float) -> str | None:
    """None when every metric is within `tolerance` (0: bit for bit); else the one-line reason."""
    bad = [row for row in rows if not row.ok(tolerance)]
    missing = [row.metric for row in bad if row.difference is None]
    beyond = sorted((row for row in bad if row.difference is not None), key=lambda r: -r.difference)
    parts = []
    if beyond:
        parts.append(
            f"{len(beyond)} of {len(rows)} metrics differ beyond tolerance {tolerance:g} "
            f"(largest: {beyond[0].metric} by {beyond[0].difference:.3g})"
        )
    if missing:
        parts.append(f"missing on one side: {', '.join(missing)}")
    return "; ".join(parts) or None
