"""Shared fixtures: a temporary MLflow store per test, the project root, real data location."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import mlflow
import pytest

ROOT = Path(__file__).resolve().parent.parent
REAL_DATA = ROOT.parent / "shared" / "data" / "mmlm2024"


def _ignore(signum, frame) -> None:
    """Ignore the signal in this process; unlike SIG_IGN, a handler is not inherited by the programs it starts."""


@pytest.fixture(scope="session", autouse=True)
def children_take_interrupts():
    """Let the processes the tests start take SIGINT and SIGHUP as from a terminal, even when the suite
    itself runs with them ignored (under nohup, or as a background job of a script): an ignored signal
    stays ignored across exec, so the steps would rightly ignore them and every Ctrl-C test would fail.
    The test process itself still ignores them."""
    for signum in (signal.SIGINT, signal.SIGHUP):
        if signal.getsignal(signum) is signal.SIG_IGN:
            signal.signal(signum, _ignore)
    yield


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


# What a user may have exported, as the README and docs/ tell them to: the tests' processes and every
# process they start see none of it, so the suite passes whatever the environment holds.
USERS_VARIABLES = (
    "MLFLOW_TRACKING_URI",
    "MLFLOW_TRACKING_USERNAME",
    "MLFLOW_TRACKING_PASSWORD",
    "MLFLOW_TRACKING_TOKEN",
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR",
    "MLFLOW_HTTP_REQUEST_TIMEOUT",
    "MLFLOW_EXPERIMENT_NAME",
    "MLFLOW_EXPERIMENT_ID",
    "MLFLOW_RUN_ID",
    "MLFLOW_S3_ENDPOINT_URL",
    "KUBE_MLFLOW_TRACKING_URI",
    "MADNESS_BACKEND_STORE_URI",
    "FABRIC_MADNESS_CACHE",
    "FABRIC_MADNESS_XLA_CACHE",
    "TF_XLA_FLAGS",
    "XDG_CACHE_HOME",
)


EXPORTED_BY_THE_USER: dict[str, str] = {}  # what the session cleared, kept for the test that checks it


def pytest_configure(config):
    """Clear the user's variables before collection (TensorFlow reads TF_XLA_FLAGS once, at import);
    xdist's workers, started later, inherit the cleared environment. Put back at the end."""
    environment = pytest.MonkeyPatch()
    EXPORTED_BY_THE_USER.update({name: os.environ[name] for name in USERS_VARIABLES if name in os.environ})
    for name in USERS_VARIABLES:
        environment.delenv(name, raising=False)
    config.add_cleanup(environment.undo)


@pytest.fixture(autouse=True, scope="session")
def _a_session_environment(tmp_path_factory):
    """Every process of the session tracks into a store of the session, never the repo's mlflow.db
    (for a test that forgets the `tracking` fixture), and keeps compiled programs
    (madness.model.use_compile_cache) and anything else it caches in folders of the session, never
    the user's own."""
    with pytest.MonkeyPatch.context() as environment:
        store = tmp_path_factory.mktemp("default-store") / "mlflow.db"
        environment.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{store}")
        environment.setenv("FABRIC_MADNESS_CACHE", str(tmp_path_factory.mktemp("compile-cache")))
        environment.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("xdg-cache")))
        yield


@pytest.fixture(autouse=True)
def _environment_put_back():
    """Put os.environ back as it was after each test: a step run in this process sets variables for
    a process it expects to end with it (retry settings, TensorFlow's log level, a run's context),
    and none of them may reach the next test."""
    saved = dict(os.environ)
    yield
    # Only what changed is put back: every setenv and unsetenv races with native threads of the
    # process reading the environment (glibc's getenv is not safe against them), so the fewer the better.
    for name in os.environ.keys() - saved.keys():
        del os.environ[name]
    for name, value in saved.items():
        if os.environ.get(name) != value:
            os.environ[name] = value


@pytest.fixture(autouse=True, scope="session")
def _tensorflow_threads_as_the_train_step_sets_them():
    """TensorFlow's thread pools can be set only before it runs its first operation: set them as the
    train step does (steps.train: all usable cores), so a step run in this process finds them so,
    whichever test of the session started TensorFlow first. Only where the collected tests train in
    this process (madness.model imported), so a session without them does not load TensorFlow."""
    if "madness.model" in sys.modules:
        from madness.backends import usable_cores
        from madness.model import set_threads

        set_threads(usable_cores())


@pytest.fixture(scope="session")
def _synthetic_leagues_of_the_session(tmp_path_factory):
    """madness.synthetic.write_league, each (seed, leagues) generated once per session by the real
    function and copied after that: the same bytes, which is all a step run in this process reads."""
    from madness import names, synthetic

    generate_and_write = synthetic.write_league
    written: dict[tuple, list[Path]] = {}

    def write_league(folder, seed, leagues=names.LEAGUES):
        key = (seed, tuple(leagues))
        if key not in written:
            written[key] = generate_and_write(tmp_path_factory.mktemp("synthetic-league"), seed, leagues)
        Path(folder).mkdir(parents=True, exist_ok=True)
        return [Path(shutil.copyfile(path, Path(folder) / path.name)) for path in written[key]]

    return write_league


@pytest.fixture(scope="module")
def synthetic_league_once(_synthetic_leagues_of_the_session):
    """For a module whose steps run in this process: each reads the synthetic league (1-2 s of CPU to
    generate) as the session's first step generated it. The module that tests the generator itself
    (test_synthetic.py) does not use this."""
    from madness import synthetic

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(synthetic, "write_league", _synthetic_leagues_of_the_session)
        yield


# The longest test files, longest first (their time in CI with `make test`, which prints it): they
# start first, so that the workers of `pytest -n auto --dist loadfile --no-loadscope-reorder` end
# together, the short files filling in at the end. A file not listed runs after them, in its order.
LONGEST_FIRST = (
    "test_kubernetes_cluster.py",  # about 4 min, plus the image's first build and push on a new machine (5-9 min)
    "test_team_server.py",  # 233 s
    "test_sweep.py",  # 140 s
    "test_team_server_stores.py",  # 139 s
    "test_team_server_faults.py",  # 135 s
    "test_bench.py",  # 99 s
    "test_reproduce_step.py",  # 79 s
    "test_seeds.py",  # 76 s
    "test_backtest.py",  # 59 s
    "test_make_server.py",  # 48 s
    "test_model.py",  # 45 s
    "test_evaluate_predict.py",
    "test_train_step.py",  # 34 s
    # Shorter in CI, and the longest of `make check` (the tests not marked slow), by their time there:
    "test_lifecycle.py",  # 10 s (timed: not in make test's first pass)
    "test_startup.py",  # 8 s
    "test_ingest_step.py",
    "test_report_figures.py",  # 4 s
    "test_reference_bits.py",
    "test_synthetic.py",
    "test_session_environment.py",  # 3 s
)


def pytest_collection_modifyitems(items):
    """Run the longest test files first (LONGEST_FIRST); the order within a file stays as written."""
    rank = {name: position for position, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))


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
