"""Reproduce: the pure helpers; the step in-process (MLflow's launcher faked); end to end on a temporary repository."""

from __future__ import annotations

import math
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import mlflow
import mlflow.projects
import pytest

from conftest import ROOT, run_cli, subprocess_env
from madness import names as n
from madness import reproduce as R
from madness.errors import UserError
from steps import reproduce as step

GIT_ENV = {"GIT_AUTHOR_NAME": "test", "GIT_AUTHOR_EMAIL": "test@example.com",
           "GIT_COMMITTER_NAME": "test", "GIT_COMMITTER_EMAIL": "test@example.com"}


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "commit.gpgsign=false", *args], cwd=repo, capture_output=True, text=True,
                          check=True, env={**os.environ, **GIT_ENV}).stdout.strip()


def commit_all(repo: Path, message: str) -> str:
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)
    return git(repo, "rev-parse", "HEAD")


# --- where the code is ---

@pytest.mark.parametrize("name, expected", [
    ("file:///work/main", R.Source(True, "/work/main")),
    ("file:///work/main#sub/project", R.Source(True, "/work/main", "sub/project")),
    ("/work/main/steps/train.py", R.Source(True, "/work/main/steps/train.py")),
    ("https://github.com/owner/repo", R.Source(False, "https://github.com/owner/repo")),
    ("https://github.com/owner/repo#project", R.Source(False, "https://github.com/owner/repo", "project")),
    ("git@github.com:owner/repo.git", R.Source(False, "git@github.com:owner/repo.git")),
])
def test_parse_source(name, expected):
    assert R.parse_source(name) == expected


@pytest.fixture
def small_repo(tmp_path):
    """A two-commit repository with an MLproject, a tracked file and a git-ignored data folder."""
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    (repo / "MLproject").write_text(
        "name: tiny\nentry_points:\n  train:\n    parameters:\n      lr: {type: float, default: 0.1}\n"
        "      data: {type: string, default: synthetic}\n      features_uri: {type: string, default: \"\"}\n"
        "    command: python -c 'pass'\n")
    (repo / ".gitignore").write_text("data/*\n")
    (repo / "code.txt").write_text("first\n")
    first = commit_all(repo, "first")
    (repo / "code.txt").write_text("second\n")
    second = commit_all(repo, "second")
    (repo / "data" / "real").mkdir(parents=True)
    (repo / "notes.txt").write_text("uncommitted\n")
    return SimpleNamespace(path=repo, first=first, second=second)


def test_worktree_checks_out_the_commit_and_leaves_the_repository_alone(small_repo):
    repo = small_repo.path
    status = git(repo, "status", "--porcelain")
    with R.worktree(repo, small_repo.first) as tree:
        assert (tree / "code.txt").read_text() == "first\n"
        assert git(tree, "rev-parse", "HEAD") == small_repo.first
        assert len(R.worktrees(repo)) == 2
        assert (repo / "code.txt").read_text() == "second\n"
    assert not tree.exists() and not tree.parent.exists()
    assert R.worktrees(repo) == [str(repo)]
    assert git(repo, "rev-parse", "--abbrev-ref", "HEAD") == "main"
    assert git(repo, "rev-parse", "HEAD") == small_repo.second
    assert git(repo, "status", "--porcelain") == status


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_worktree_is_removed_when_the_body_fails(small_repo, error):
    with pytest.raises(error):
        with R.worktree(small_repo.path, small_repo.first) as tree:
            raise error("boom")
    assert not tree.exists()
    assert R.worktrees(small_repo.path) == [str(small_repo.path)]


def test_worktree_of_an_unknown_commit_is_a_user_error(small_repo):
    with pytest.raises(UserError, match="cannot check out commit 0{40}"):
        with R.worktree(small_repo.path, "0" * 40):
            pass
    assert R.worktrees(small_repo.path) == [str(small_repo.path)]


def test_find_repository_skips_missing_paths_and_repositories_without_the_commit(small_repo, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    git(other, "init", "-q")
    candidates = [tmp_path / "gone" / "steps" / "train.py", other, small_repo.path / "code.txt"]
    assert R.find_repository(candidates, small_repo.first) == (small_repo.path, "")
    assert R.find_repository(candidates[:2], small_repo.first) is None


def test_project_subdirectory_is_the_folder_holding_mlproject(tmp_path):
    (tmp_path / "sub" / "steps").mkdir(parents=True)
    (tmp_path / "sub" / "MLproject").write_text("name: x\n")
    assert R.project_subdirectory(tmp_path / "sub" / "steps" / "train.py", tmp_path) == "sub"
    assert R.project_subdirectory(tmp_path, tmp_path) == ""


# --- what to pass ---

def test_unquote_params_undoes_mlflow_shell_quoting():
    logged = {"features_uri": "''", "data": "'/data/with space'", "lr": "0.01", "odd": "it's"}
    assert R.unquote_params(logged, shell_quoted=True) == {
        "features_uri": "", "data": "/data/with space", "lr": "0.01", "odd": "it's"}


def test_unquote_params_keeps_values_a_step_logged_itself():
    assert R.unquote_params({"features_uri": "''"}, shell_quoted=False) == {"features_uri": "''"}


def test_declared_params_and_selection():
    text = "entry_points:\n  train:\n    parameters:\n      lr: {type: float, default: 0.1}\n    command: x\n"
    declared = R.declared_params(text, "train")
    assert declared == ["lr"]
    assert R.select_params({"lr": "0.1", "stray": "1"}, declared) == ({"lr": "0.1"}, ["stray"])
    with pytest.raises(UserError, match=r"entry point 'evaluate' is not in MLproject at that commit; it has: train"):
        R.declared_params(text, "evaluate")


@pytest.mark.parametrize("given, tags, chosen", [
    ("", {}, "local"),
    ("", {"mlflow.project.env": "virtualenv"}, "virtualenv"),
    ("", {"env_manager": "uv"}, "uv"),
    ("local", {"mlflow.project.env": "conda"}, "local"),
])
def test_choose_env_manager(given, tags, chosen):
    assert R.choose_env_manager(given, tags, ("mlflow.project.env", "env_manager")) == chosen


def test_choose_env_manager_refuses_docker():
    with pytest.raises(UserError, match=r"env_manager 'docker'; accepted: local, virtualenv, uv, conda"):
        R.choose_env_manager("", {"mlflow.project.env": "docker"}, ("mlflow.project.env",))


@pytest.mark.parametrize("uri, expected", [
    ("sqlite:///mlflow.db", "sqlite:////work/x/mlflow.db"),
    ("sqlite:////tmp/a.db", "sqlite:////tmp/a.db"),
    ("mlruns", "/work/x/mlruns"),
    ("file:mlruns", "file:///work/x/mlruns"),
    ("file:///tmp/mlruns", "file:///tmp/mlruns"),
    ("http://localhost:5000", "http://localhost:5000"),
    ("databricks", "databricks"),
])
def test_absolute_tracking_uri(uri, expected):
    assert R.absolute_tracking_uri(uri, Path("/work/x")) == expected


def test_input_links_reach_ignored_and_sibling_folders(tmp_path):
    project = tmp_path / "home" / "main"
    (project / "data" / "real").mkdir(parents=True)
    (tmp_path / "home" / "shared" / "kaggle").mkdir(parents=True)
    scratch = tmp_path / "scratch"
    rerun = scratch / "main"
    (rerun / "data").mkdir(parents=True)
    params = {"a": "data/real", "b": "../shared/kaggle", "c": "synthetic", "d": "runs:/x/features",
              "e": "../../far", "f": str(project / "data" / "real"), "g": ""}
    (tmp_path / "far").mkdir()
    assert R.input_links(params, project, rerun, scratch) == [
        (rerun / "data" / "real", (project / "data" / "real").resolve()),
        (scratch / "shared" / "kaggle", (tmp_path / "home" / "shared" / "kaggle").resolve()),
    ]
    R.make_links(R.input_links(params, project, rerun, scratch))
    assert (rerun / "../shared/kaggle").resolve() == (tmp_path / "home" / "shared" / "kaggle").resolve()


# --- did it reproduce ---

def points(*values, start=0):
    return [(start + i, 1000 + i, v) for i, v in enumerate(values)]


def test_identical_runs_reproduce_bit_for_bit():
    runs = {"brier": points(0.21063359491095265), "train_loss": points(0.3, 0.2, 0.1, start=1)}
    rows = R.compare(runs, dict(runs))
    assert [(r.metric, r.steps, r.difference) for r in rows] == [("brier", 1, 0.0), ("train_loss", 3, 0.0)]
    assert R.verdict(rows, 0.0) is None


def test_a_last_bit_difference_fails_at_zero_tolerance_and_passes_within_it():
    a = 0.21063359491095265
    b = math.nextafter(a, 1.0)
    rows = R.compare({"brier": points(a)}, {"brier": points(b)})
    assert R.verdict(rows, 0.0) == f"1 of 1 metrics differ beyond tolerance 0 (largest: brier by {b - a:.3g})"
    assert R.verdict(rows, 1e-12) is None


def test_histories_are_compared_step_by_step():
    rows = R.compare({"val_loss": points(0.5, 0.4, 0.3)}, {"val_loss": points(0.5, 0.45, 0.3)})
    (row,) = rows
    assert row.original == row.rerun == 0.3  # the latest values agree...
    assert row.difference == pytest.approx(0.05) and row.note == "worst at step 1"  # ...an earlier epoch does not
    assert not row.ok(0.01)


def test_a_step_logged_twice_keeps_its_latest_value():
    assert R.by_step([(1, 2000, 0.2), (1, 1000, 0.9), (0, 500, 0.1)]) == {0: 0.1, 1: 0.2}


def test_a_metric_missing_on_one_side_is_reported():
    rows = R.compare({"brier": points(0.2), "old_only": points(1.0)}, {"brier": points(0.2), "new_only": points(2.0)})
    assert [(r.metric, r.difference, r.note) for r in rows] == [
        ("brier", 0.0, ""), ("new_only", None, "missing in the original"), ("old_only", None, "missing in the rerun")]
    assert R.verdict(rows, 1.0) == "missing on one side: new_only, old_only"


def test_a_missing_step_is_a_difference():
    (row,) = R.compare({"loss": points(0.3, 0.2)}, {"loss": points(0.3)})
    assert row.difference is None and row.note == "step 1 missing in the rerun (1 steps differ)"


def test_nan_equals_nan_but_not_a_number():
    rows = R.compare({"a": points(math.nan), "b": points(math.nan)}, {"a": points(math.nan), "b": points(0.5)})
    assert [r.difference for r in rows] == [0.0, math.inf]


def test_table_shows_full_precision_and_the_verdict():
    rows = R.compare({"brier": points(0.1), "accuracy": points(0.7)}, {"brier": points(0.1), "accuracy": points(0.7000000000000001)})
    lines = R.table(rows, 0.0).splitlines()
    assert lines[0].split() == ["metric", "steps", "original", "rerun", "difference", "result"]
    assert lines[1].split() == ["accuracy", "1", "0.7", "0.7000000000000001", "1.11e-16", "DIFFERS"]
    assert lines[2].split() == ["brier", "1", "0.1", "0.1", "0", "ok"]


# --- the step in-process: MLflow's launcher replaced by a fake, no training ---

@pytest.fixture(scope="module")
def shared_store(tmp_path_factory):
    """One SQLite store for this module: creating one costs seconds (schema migrations)."""
    folder = tmp_path_factory.mktemp("store")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    experiment = mlflow.create_experiment("in-process", artifact_location=(folder / "artifacts").as_uri())
    mlflow.set_tracking_uri(None)
    return SimpleNamespace(uri=uri, experiment=experiment, folder=folder)


@pytest.fixture
def tracking(shared_store, monkeypatch):
    """conftest's `tracking`, on the module's store: each test reads only the runs it made."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", shared_store.uri)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_ID", shared_store.experiment)
    for name in ("MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_NAME"):
        monkeypatch.delenv(name, raising=False)
    mlflow.set_tracking_uri(shared_store.uri)
    mlflow.set_experiment(experiment_id=shared_store.experiment)
    yield shared_store.uri
    while mlflow.active_run():
        mlflow.end_run()
    mlflow.set_tracking_uri(None)


def failure(capsys, argv) -> str:
    with pytest.raises(SystemExit) as exit_:
        step.main(argv)
    assert exit_.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def test_unknown_run_id_is_a_one_line_error(tracking, capsys):
    line = failure(capsys, ["--run_id", "0123456789abcdef0123456789abcdef"])
    assert line.startswith("error: no run '0123456789abcdef0123456789abcdef' in the tracking store sqlite:")


def test_run_without_git_commit_is_a_one_line_error(tracking, capsys):
    client = mlflow.MlflowClient()
    run = client.create_run(os.environ["MLFLOW_EXPERIMENT_ID"], tags={n.TAG_ENTRY_POINT: "train"})
    line = failure(capsys, ["--run_id", run.info.run_id])
    assert line == (f"error: run {run.info.run_id} has no git commit (tag mlflow.source.git.commit): it was not "
                    "started from a git repository, so the code it ran cannot be checked out")


def test_run_without_entry_point_is_a_one_line_error(tracking, capsys):
    run = mlflow.MlflowClient().create_run(os.environ["MLFLOW_EXPERIMENT_ID"], tags={n.TAG_COMMIT: "a" * 40})
    assert "records no entry point" in failure(capsys, ["--run_id", run.info.run_id])


def test_bad_tolerance_is_refused(tracking, capsys):
    with pytest.raises(SystemExit) as exit_:
        step.main(["--run_id", "x", "--tolerance", "-1"])
    assert exit_.value.code == 2
    assert "tolerance must be >= 0, got -1.0" in capsys.readouterr().err


class FakeLauncher:
    """Stands for `mlflow.projects.run`: records the call, inspects the checkout, logs given metrics."""

    def __init__(self, metrics: dict[str, list[tuple[int, float]]]):
        self.metrics, self.calls = metrics, []

    def __call__(self, uri, entry_point, version, parameters, env_manager, experiment_id, synchronous):
        checkout = Path(uri)
        self.calls.append(SimpleNamespace(
            uri=uri, entry_point=entry_point, version=version, parameters=parameters, env_manager=env_manager,
            experiment_id=experiment_id, exists=checkout.is_dir(),
            head=git(checkout, "rev-parse", "HEAD") if checkout.is_dir() else None,
            data_link=(checkout / "data" / "real").is_symlink(), path=os.environ["PATH"]))
        client = mlflow.MlflowClient()
        run = client.create_run(experiment_id, tags={step.PARENT_RUN: mlflow.active_run().info.run_id})
        for key, values in self.metrics.items():
            for step_, value in values:
                client.log_metric(run.info.run_id, key, value, step=step_)
        client.set_terminated(run.info.run_id)
        return SimpleNamespace(run_id=run.info.run_id)


def past_run(metrics, **tags):
    client = mlflow.MlflowClient()
    run = client.create_run(os.environ["MLFLOW_EXPERIMENT_ID"], tags=tags)
    client.log_batch(run.info.run_id, params=[mlflow.entities.Param(k, v) for k, v in
                                              {"lr": "0.1", "data": "data/real", "features_uri": "''", "stray": "1"}.items()])
    for key, values in metrics.items():
        for step_, value in values:
            client.log_metric(run.info.run_id, key, value, step=step_)
    client.set_terminated(run.info.run_id)
    return run.info.run_id


METRICS = {"brier": [(0, 0.21)], "val_loss": [(1, 0.3), (2, 0.25)]}


def test_a_local_run_is_rerun_in_a_worktree_of_its_commit(tracking, small_repo, monkeypatch, capsys):
    fake = FakeLauncher(METRICS)
    monkeypatch.setattr(mlflow.projects, "run", fake)
    original = past_run(METRICS, **{n.TAG_COMMIT: small_repo.first, step.PROJECT_ENTRY_POINT: "train",
                                    step.SOURCE_NAME: f"file://{small_repo.path}", n.TAG_DIRTY: "true"})
    path = os.environ["PATH"]
    step.main(["--run_id", original])
    out = capsys.readouterr().out
    (call,) = fake.calls
    assert call.exists and call.head == small_repo.first and call.version is None and call.entry_point == "train"
    assert call.parameters == {"lr": "0.1", "data": "data/real", "features_uri": ""}  # unquoted; `stray` left out
    assert call.data_link  # the git-ignored data folder the param names is linked into the checkout
    assert call.env_manager == "local" and call.path.startswith(str(Path(sys.executable).parent) + os.pathsep)
    assert os.environ["PATH"] == path
    assert call.experiment_id == os.environ["MLFLOW_EXPERIMENT_ID"]
    assert not Path(call.uri).exists()
    assert R.worktrees(small_repo.path) == [str(small_repo.path)]
    assert git(small_repo.path, "rev-parse", "HEAD") == small_repo.second
    assert f"warning: run {original} ran from a working tree with uncommitted changes" in out
    assert "warning: params not declared by entry point 'train' at that commit, left out: stray" in out
    assert out.strip().splitlines()[-1].startswith("reproduced: rerun ") and out.endswith("on 2 metrics bit for bit\n")
    client = mlflow.MlflowClient()
    (rerun,) = client.search_runs([call.experiment_id], f"tags.{n.TAG_REPRODUCES} = '{original}'")
    parent = client.get_run(rerun.data.tags[step.PARENT_RUN])
    assert parent.data.tags[n.TAG_ENTRY_POINT] == "reproduce" and parent.info.status == "FINISHED"
    assert "brier" in mlflow.artifacts.load_text(f"runs:/{parent.info.run_id}/{step.COMPARISON_FILE}")


def test_a_difference_fails_with_the_table_printed(tracking, small_repo, monkeypatch, capsys):
    monkeypatch.setattr(mlflow.projects, "run", FakeLauncher({"brier": [(0, 0.22)], "val_loss": METRICS["val_loss"]}))
    original = past_run(METRICS, **{n.TAG_COMMIT: small_repo.first, n.TAG_ENTRY_POINT: "train",
                                    step.SOURCE_NAME: str(small_repo.path / "steps" / "train.py")})
    with pytest.raises(SystemExit) as exit_:
        step.main(["--run_id", original])
    assert exit_.value.code == 1
    captured = capsys.readouterr()
    assert ["brier", "1", "0.21", "0.22", "0.01", "DIFFERS"] in [line.split() for line in captured.out.splitlines()]
    assert captured.err.strip().startswith("error: not reproduced: 1 of 2 metrics differ beyond tolerance 0 (largest: brier by 0.01)")
    assert R.worktrees(small_repo.path) == [str(small_repo.path)]


def test_tolerance_accepts_a_small_difference(tracking, small_repo, monkeypatch, capsys):
    monkeypatch.setattr(mlflow.projects, "run", FakeLauncher({"brier": [(0, 0.2100001)], "val_loss": METRICS["val_loss"]}))
    original = past_run(METRICS, **{n.TAG_COMMIT: small_repo.first, n.TAG_ENTRY_POINT: "train",
                                    step.SOURCE_NAME: str(small_repo.path / "steps" / "train.py")})
    step.main(["--run_id", original, "--tolerance", "1e-6"])
    assert capsys.readouterr().out.endswith("on 2 metrics within 1e-6\n")


def test_a_rerun_whose_worktree_is_gone_is_found_through_its_original(tracking, small_repo, monkeypatch, capsys):
    fake = FakeLauncher(METRICS)
    monkeypatch.setattr(mlflow.projects, "run", fake)
    tags = {n.TAG_COMMIT: small_repo.first, step.PROJECT_ENTRY_POINT: "train"}
    original = past_run(METRICS, **tags, **{step.SOURCE_NAME: f"file://{small_repo.path}"})
    rerun = past_run(METRICS, **tags, **{step.SOURCE_NAME: "file:///tmp/madness-reproduce-gone/repo",
                                         n.TAG_REPRODUCES: original, step.PROJECT_ENV: "virtualenv"})
    step.main(["--run_id", rerun, "--env_manager", "", "--experiment", "elsewhere"])
    (call,) = fake.calls
    assert call.head == small_repo.first and call.env_manager == "virtualenv"
    assert call.experiment_id == mlflow.get_experiment_by_name("elsewhere").experiment_id


def test_a_remote_run_is_rerun_from_its_url_at_its_commit(tracking, monkeypatch, capsys):
    fake = FakeLauncher(METRICS)
    monkeypatch.setattr(mlflow.projects, "run", fake)
    original = past_run(METRICS, **{n.TAG_COMMIT: "c" * 40, step.PROJECT_ENTRY_POINT: "train",
                                    step.SOURCE_NAME: "https://example.com/owner/repo#project"})
    step.main(["--run_id", original])
    (call,) = fake.calls
    assert (call.uri, call.version, call.exists) == ("https://example.com/owner/repo#project", "c" * 40, False)
    assert call.parameters == {"lr": "0.1", "data": "data/real", "features_uri": "", "stray": "1"}


# --- end to end: a temporary repository, real training, real `mlflow run` ---

@pytest.fixture(scope="module")
def history(tmp_path_factory, shared_store):
    """A copy of this project (working tree included) committed twice, a train run at each commit.

    The second commit swaps the small network for a narrower one, so its code gives another Brier
    from the same params; the repository is then left with uncommitted changes of its own.
    """
    base = tmp_path_factory.mktemp("reproduce")
    repo = base / "repo"
    repo.mkdir()
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT,
                            capture_output=True, text=True, check=True).stdout.split("\0")
    for name in listed:
        if name and not name.startswith(".venv/") and (ROOT / name).is_file():
            (repo / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, repo / name)
    git(repo, "init", "-q", "-b", "main")
    first = commit_all(repo, "the code that made the first run")

    uri = shared_store.uri
    mlflow.set_tracking_uri(uri)
    experiment = mlflow.create_experiment("end-to-end", artifact_location=(base / "artifacts").as_uri())
    mlflow.set_tracking_uri(None)
    env = {"MLFLOW_TRACKING_URI": uri, "MLFLOW_EXPERIMENT_ID": experiment, "PYTHONPATH": ""}
    train = [sys.executable, "-m", "steps.train", "--model", "small", "--epochs", "2", "--league", "W"]

    def train_run(cwd) -> str:
        done = run_cli(train, cwd=cwd, env=env)
        assert done.returncode == 0, done.stderr[-2000:]
        return done.stdout.split("train run ")[1].split(":")[0]

    first_run = train_run(repo)
    with (repo / "madness" / "model.py").open("a") as file:
        file.write('\nARCHITECTURES["small"] = (8,)  # the later commit: a narrower network\n')
    second = commit_all(repo, "a narrower small network")
    (repo / "scratch.txt").write_text("not committed\n")
    with (repo / "conda.yaml").open("a") as file:
        file.write("# an uncommitted edit\n")
    second_run = train_run(repo)
    yield SimpleNamespace(repo=repo, first=first, second=second, first_run=first_run, second_run=second_run,
                          uri=uri, experiment=experiment, env=env)


def repo_state(repo: Path) -> tuple:
    return (git(repo, "rev-parse", "--abbrev-ref", "HEAD"), git(repo, "rev-parse", "HEAD"),
            git(repo, "status", "--porcelain"), R.worktrees(repo), git(repo, "remote"))


@pytest.mark.slow
def test_mlflow_run_reproduces_a_past_run_bit_for_bit_from_its_commit(history):
    client = mlflow.MlflowClient(tracking_uri=history.uri)
    before = repo_state(history.repo)
    assert before[4] == "" and before[2]  # no remote; uncommitted changes that must survive
    started = time.perf_counter()
    done = run_cli(["mlflow", "run", str(history.repo), "-e", "reproduce", "-P", f"run_id={history.first_run}",
                    "--env-manager", "local"], cwd=history.repo, env=history.env)
    seconds = time.perf_counter() - started
    assert done.returncode == 0, done.stderr[-3000:]
    assert repo_state(history.repo) == before  # branch, commit, uncommitted changes, worktrees, remotes

    (rerun,) = client.search_runs([history.experiment], f"tags.{n.TAG_REPRODUCES} = '{history.first_run}'")
    original = client.get_run(history.first_run)
    fresh = client.get_run(history.second_run)
    assert rerun.info.status == "FINISHED"
    assert rerun.data.tags[n.TAG_COMMIT] == original.data.tags[n.TAG_COMMIT] == history.first
    assert fresh.data.tags[n.TAG_COMMIT] == history.second
    assert rerun.data.metrics[n.BRIER] == original.data.metrics[n.BRIER]
    assert fresh.data.metrics[n.BRIER] != original.data.metrics[n.BRIER]  # the later code does differ
    losses = [[m.value for m in client.get_metric_history(r.info.run_id, n.VAL_LOSS)] for r in (original, rerun)]
    assert losses[0] == losses[1] and len(losses[0]) == 2
    assert R.unquote_params(rerun.data.params, shell_quoted=True) == original.data.params
    worktree = Path(R.parse_source(rerun.data.tags[step.SOURCE_NAME]).location)
    assert worktree.name == "repo" and worktree.parent.name.startswith(R.WORKTREE_PREFIX) and not worktree.parent.exists()
    parent = client.get_run(rerun.data.tags[step.PARENT_RUN])
    assert parent.data.tags[n.TAG_ENTRY_POINT] == "reproduce" and parent.data.params["env_manager"] == "''"
    assert (f"reproduced: rerun {rerun.info.run_id} matches run {history.first_run} "
            f"on {len(original.data.metrics)} metrics bit for bit") in done.stdout
    assert f"{n.BRIER} " in done.stdout and "DIFFERS" not in done.stdout
    print(f"reproduce via mlflow run: {seconds:.0f} s")


@pytest.mark.slow
def test_a_failed_rerun_removes_its_worktree(history):
    client = mlflow.MlflowClient(tracking_uri=history.uri)
    original = client.create_run(history.experiment, tags={
        n.TAG_COMMIT: history.first, n.TAG_ENTRY_POINT: "ingest", n.TAG_DIRTY: "true",
        step.SOURCE_NAME: str(history.repo / "steps" / "ingest.py")})
    client.log_param(original.info.run_id, "league", "X")  # refused by the step at that commit
    before = repo_state(history.repo)
    done = run_cli([sys.executable, "-m", "steps.reproduce", "--run_id", original.info.run_id],
                   cwd=history.repo, env=history.env)
    assert done.returncode == 1
    (line,) = done.stderr.strip().splitlines()[-1:]
    (rerun,) = client.search_runs([history.experiment], f"tags.{n.TAG_REPRODUCES} = '{original.info.run_id}'")
    assert line == (f"error: the rerun {rerun.info.run_id} of run {original.info.run_id} at commit {history.first[:12]} "
                    f"failed: Run (ID '{rerun.info.run_id}') failed")
    assert rerun.info.status == "FAILED"
    assert "ran from a working tree with uncommitted changes (git.dirty=true)" in done.stdout
    assert repo_state(history.repo) == before


def rerun_started(client, history) -> bool:
    """Whether the reproduction of the second run has created its rerun (MLflow does so just
    before it starts the rerun's command)."""
    runs = client.search_runs([history.experiment], f"params.run_id = '{history.second_run}' and tags.{n.TAG_ENTRY_POINT} = 'reproduce'")
    return bool(runs) and bool(client.search_runs([history.experiment], f"tags.`{step.PARENT_RUN}` = '{runs[0].info.run_id}'"))


@pytest.mark.slow
def test_sigterm_stops_the_rerun_and_removes_the_worktree(history):
    client = mlflow.MlflowClient(tracking_uri=history.uri)
    before = repo_state(history.repo)
    proc = subprocess.Popen([sys.executable, "-m", "steps.reproduce", "--run_id", history.second_run],
                            cwd=history.repo, env=subprocess_env(history.env), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not rerun_started(client, history) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert len(R.worktrees(history.repo)) == 2
        time.sleep(1)  # the rerun's command is starting
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err[-2000:]
    assert err.strip().splitlines()[-1] == "error: interrupted"
    assert repo_state(history.repo) == before
    reruns = client.search_runs([history.experiment], f"tags.{n.TAG_REPRODUCES} = '{history.second_run}'")
    assert [r.info.status for r in reruns] in (["KILLED"], ["FAILED"])
