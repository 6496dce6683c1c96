"""The image for MLflow's kubernetes backend: what `docker build .` sends (read with the docker
library's own .dockerignore rules) and what the Dockerfile pins. No Docker engine is needed."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from docker.utils.build import exclude_paths

ROOT = Path(__file__).resolve().parent.parent
# What a working copy holds besides the project: none of it may reach the image.
STRAYS = (
    ".venv/bin/python",
    "mlflow.db",
    "mlruns/0/meta.yaml",
    "mlartifacts/1/a.txt",
    "outputs/submission.csv",
    ".server/postgres/PG_VERSION",
    "data/mmlm2024/MTeams.csv",
    "madness/__pycache__/model.cpython-311.pyc",
    ".pytest_cache/README.md",
    ".kubernetes/MLproject",
)


def project_files() -> list[str]:
    """The project's files as they stand (tracked, and new ones not ignored), git's view."""
    out = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [line for line in out.splitlines() if (ROOT / line).is_file()]


@pytest.fixture(scope="module")
def context(tmp_path_factory) -> set[str]:
    """The files `docker build .` would send from a working copy holding the project, its .git and
    the strays, as docker's client computes them from .dockerignore."""
    copy = tmp_path_factory.mktemp("context")
    for name in project_files():
        (copy / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, copy / name)
    shutil.copytree(ROOT / ".git", copy / ".git")
    for name in STRAYS:
        (copy / name).parent.mkdir(parents=True, exist_ok=True)
        (copy / name).write_text("not the project's\n")
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    return {path for path in exclude_paths(str(copy), patterns) if (copy / path).is_file()}


def test_every_project_file_goes_into_the_image(context):
    assert set(project_files()) <= context


def test_the_git_history_goes_in_for_the_cache_key(context):
    assert ".git/HEAD" in context and any(path.startswith(".git/objects/") for path in context)


@pytest.mark.parametrize("stray", STRAYS)
def test_environments_stores_runs_data_and_outputs_stay_out(context, stray):
    assert stray not in context


def test_the_image_has_the_python_conda_yaml_pins():
    pinned = re.search(r"^\s*-\s*python=(\S+)", (ROOT / "conda.yaml").read_text(), re.M).group(1)
    base = re.search(r"^FROM python:(\S+?)-", (ROOT / "Dockerfile").read_text(), re.M).group(1)
    assert base == pinned


def test_the_image_installs_exactly_the_lock_and_git():
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r"uv pip install --system .*-r requirements\.lock", dockerfile)
    assert re.search(r"apt-get install .*\bgit\b", dockerfile)
