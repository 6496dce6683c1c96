"""Shared fixtures: a temporary MLflow store per test, the project root, real data location."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import mlflow
import pytest

ROOT = Path(__file__).resolve().parent.parent
REAL_DATA = ROOT.parent / "shared" / "data" / "mmlm2024"


@pytest.fixture
def tracking(tmp_path):
    """A fresh SQLite tracking store and artifact root; the repo's mlflow.db is never touched."""
    from stores import temp_store

    with temp_store(tmp_path) as (uri, _):
        yield uri


@pytest.fixture
def real_data():
    if not (REAL_DATA / "WRegularSeasonCompactResults.csv").is_file():
        pytest.skip(f"real Kaggle data not found at {REAL_DATA}")
    return REAL_DATA


def subprocess_env(extra: dict | None = None) -> dict:
    """The environment for `mlflow run` and step subprocesses: this interpreter's bin first on PATH."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = str(ROOT)
    env.update(extra or {})
    return env


def run_cli(args: list[str], cwd: Path = ROOT, env: dict | None = None, timeout: int = 900):
    """Run a command (e.g. `python -m steps.ingest ...`) and return the CompletedProcess."""
    return subprocess.run(
        args, cwd=cwd, env=subprocess_env(env), capture_output=True, text=True, timeout=timeout, check=False
    )


def runs_of(experiment_id: str | None = None):
    client = mlflow.MlflowClient()
    ids = [experiment_id] if experiment_id else [e.experiment_id for e in client.search_experiments()]
    return client.search_runs(ids)


@pytest.fixture(scope="module")
def server():
    """PostgreSQL and `mlflow server` for one test module (tests/servers.py), stopped and removed after it."""
    from servers import team_server

    with team_server() as running:
        yield running


@pytest.fixture(scope="module")
def team(server, tmp_path_factory, request):
    """A project snapshot whose commands run against the module's server."""
    from servers import team_of

    return team_of(server, tmp_path_factory.mktemp(request.module.__name__.rsplit(".", 1)[-1]))


@pytest.fixture(autouse=True, scope="session")
def _never_the_repo_store(tmp_path_factory):
    """A test that forgets the `tracking` fixture still never writes into the repo's mlflow.db."""
    previous = os.environ.get("MLFLOW_TRACKING_URI")
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp_path_factory.mktemp('default-store') / 'mlflow.db'}"
    yield
    if previous is None:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    else:
        os.environ["MLFLOW_TRACKING_URI"] = previous


@pytest.fixture(autouse=True, scope="session")
def _a_session_compile_cache(tmp_path_factory):
    """Train runs keep compiled programs (madness.model.use_compile_cache): the tests' go to a
    folder of the session, shared by every process it starts, never the user's own cache."""
    from steps.train import CACHE_ENV

    previous = os.environ.get(CACHE_ENV)
    os.environ[CACHE_ENV] = str(tmp_path_factory.mktemp("compile-cache"))
    yield
    if previous is None:
        os.environ.pop(CACHE_ENV, None)
    else:
        os.environ[CACHE_ENV] = previous


@pytest.hookimpl(trylast=True)
def pytest_terminal_summary(terminalreporter):
    """Print each test file's time (set-up, call and tear-down of its tests), slowest first, below
    pytest's slowest tests (--durations): where the suite's time goes, file by file."""
    per_file = Counter()
    for reports in terminalreporter.stats.values():
        for report in reports:
            if isinstance(report, pytest.TestReport):
                per_file[report.nodeid.split("::", 1)[0]] += report.duration
    if per_file:
        terminalreporter.write_sep("=", f"time per test file ({sum(per_file.values()):.1f}s in all)")
        for path, seconds in per_file.most_common():
            terminalreporter.write_line(f"{seconds:8.2f}s {path}")
