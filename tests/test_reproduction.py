"""madness.reproduce, the pure helpers of reruns: where a run's code is (a worktree of its commit),
what to pass it, and whether the rerun matched, on small real git repositories."""

from __future__ import annotations

import math
import re
from pathlib import Path
from types import SimpleNamespace

import pytest

from madness import names
from madness import reproduce as reproduction
from madness.errors import UserError
from repos import commit_all, git, worktrees

# --- where the code is ---


@pytest.mark.parametrize(
    "name, expected",
    [
        ("file:///work/main", reproduction.Source(True, "/work/main")),
        ("file:///work/main#sub/project", reproduction.Source(True, "/work/main", "sub/project")),
        ("/work/main/steps/train.py", reproduction.Source(True, "/work/main/steps/train.py")),
        ("https://github.com/owner/repo", reproduction.Source(False, "https://github.com/owner/repo")),
        (
            "https://github.com/owner/repo#project",
            reproduction.Source(False, "https://github.com/owner/repo", "project"),
        ),
        ("git@github.com:owner/repo.git", reproduction.Source(False, "git@github.com:owner/repo.git")),
    ],
)
def test_parse_source(name, expected):
    assert reproduction.parse_source(name) == expected


@pytest.fixture
def small_repo(tmp_path):
    """A two-commit repository with an MLproject, a tracked file and a git-ignored data folder."""
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    (repo / "MLproject").write_text(
        "name: tiny\nentry_points:\n  train:\n    parameters:\n      lr: {type: float, default: 0.1}\n"
        '      data: {type: string, default: synthetic}\n      features_uri: {type: string, default: ""}\n'
        "    command: python -c 'pass'\n"
    )
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
    with reproduction.worktree(repo, small_repo.first) as tree:
        assert (tree / "code.txt").read_text() == "first\n"
        assert git(tree, "rev-parse", "HEAD") == small_repo.first
        assert len(worktrees(repo)) == 2
        assert (repo / "code.txt").read_text() == "second\n"
    assert not tree.exists() and not tree.parent.exists()
    assert worktrees(repo) == [str(repo)]
    assert git(repo, "rev-parse", "--abbrev-ref", "HEAD") == "main"
    assert git(repo, "rev-parse", "HEAD") == small_repo.second
    assert git(repo, "status", "--porcelain") == status


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_worktree_is_removed_when_the_body_fails(small_repo, error):
    with pytest.raises(error), reproduction.worktree(small_repo.path, small_repo.first) as tree:
        raise error("boom")
    assert not tree.exists()
    assert worktrees(small_repo.path) == [str(small_repo.path)]


def test_worktree_of_an_unknown_commit_is_a_user_error(small_repo):
    with (
        pytest.raises(UserError, match="cannot check out commit 0{40}"),
        reproduction.worktree(small_repo.path, "0" * 40),
    ):
        pass
    assert worktrees(small_repo.path) == [str(small_repo.path)]


def test_find_repository_skips_missing_paths_and_repositories_without_the_commit(small_repo, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    git(other, "init", "-q")
    candidates = [tmp_path / "gone" / "steps" / "train.py", other, small_repo.path / "code.txt"]
    assert reproduction.find_repository(candidates, small_repo.first) == (small_repo.path, "")
    with pytest.raises(
        UserError, match=re.escape(f"commit {small_repo.first} is in no repository at {tmp_path / 'gone'}")
    ):
        reproduction.find_repository(candidates[:2], small_repo.first)


def test_project_subdirectory_is_the_folder_holding_mlproject(tmp_path):
    (tmp_path / "sub" / "steps").mkdir(parents=True)
    (tmp_path / "sub" / "MLproject").write_text("name: x\n")
    assert reproduction.project_subdirectory(tmp_path / "sub" / "steps" / "train.py", tmp_path) == "sub"
    assert reproduction.project_subdirectory(tmp_path, tmp_path) == ""


# --- what to pass ---


def test_unquote_params_undoes_mlflow_shell_quoting():
    logged = {"features_uri": "''", "data": "'/data/with space'", "lr": "0.01", "odd": "it's"}
    assert reproduction.unquote_params(logged, shell_quoted=True) == {
        "features_uri": "",
        "data": "/data/with space",
        "lr": "0.01",
        "odd": "it's",
    }


def test_unquote_params_keeps_values_a_step_logged_itself():
    assert reproduction.unquote_params({"features_uri": "''"}, shell_quoted=False) == {"features_uri": "''"}


def test_select_params_keeps_the_declared_ones():
    text = "entry_points:\n  train:\n    parameters:\n      lr: {type: float, default: 0.1}\n    command: x\n"
    params = {"lr": "0.1", "stray": "1"}
    assert reproduction.select_params(params, text, "train") == ({"lr": "0.1"}, ["stray"])
    with pytest.raises(UserError, match=r"entry point 'evaluate' is not in MLproject at that commit; it has: train"):
        reproduction.select_params(params, text, "evaluate")


@pytest.mark.parametrize(
    "given, tags, chosen",
    [
        ("", {}, "local"),
        ("", {names.TAG_PROJECT_ENV: "virtualenv"}, "virtualenv"),
        ("", {"env_manager": "uv"}, "uv"),
        ("local", {names.TAG_PROJECT_ENV: "conda"}, "local"),
    ],
)
def test_choose_env_manager(given, tags, chosen):
    assert reproduction.choose_env_manager(given, tags) == chosen


def test_choose_env_manager_refuses_docker():
    with pytest.raises(UserError, match=r"env_manager 'docker'; accepted: local, virtualenv, uv, conda"):
        reproduction.choose_env_manager("", {names.TAG_PROJECT_ENV: "docker"})


@pytest.mark.parametrize(
    "uri, expected",
    [
        ("sqlite:///mlflow.db", "sqlite:////work/x/mlflow.db"),
        ("sqlite:////tmp/a.db", "sqlite:////tmp/a.db"),
        ("mlruns", "/work/x/mlruns"),
        ("file:mlruns", "file:///work/x/mlruns"),
        ("file:///tmp/mlruns", "file:///tmp/mlruns"),
        ("http://localhost:5000", "http://localhost:5000"),
        ("databricks", "databricks"),
    ],
)
def test_absolute_tracking_uri(uri, expected):
    assert reproduction.absolute_tracking_uri(uri, Path("/work/x")) == expected


def test_inputs_are_linked_from_ignored_and_sibling_folders(tmp_path):
    project = tmp_path / "home" / "main"
    (project / "data" / "real").mkdir(parents=True)
    (tmp_path / "home" / "shared" / "kaggle").mkdir(parents=True)
    scratch = tmp_path / "scratch"
    rerun = scratch / "main"
    (rerun / "data").mkdir(parents=True)
    params = {
        "a": "data/real",
        "b": "../shared/kaggle",
        "c": "synthetic",
        "d": "runs:/x/features",
        "e": "../../far",
        "f": str(project / "data" / "real"),
        "g": "",
    }
    (tmp_path / "far").mkdir()
    assert reproduction.link_inputs(params, project, rerun, scratch) == [
        (rerun / "data" / "real", (project / "data" / "real").resolve()),
        (scratch / "shared" / "kaggle", (tmp_path / "home" / "shared" / "kaggle").resolve()),
    ]
    assert (rerun / "data" / "real").resolve() == (project / "data" / "real").resolve()
    assert (rerun / "../shared/kaggle").resolve() == (tmp_path / "home" / "shared" / "kaggle").resolve()


def test_a_folder_two_params_name_is_linked_once(tmp_path):
    project, rerun = tmp_path / "main", tmp_path / "scratch" / "main"
    (project / "data" / "real").mkdir(parents=True)
    rerun.mkdir(parents=True)
    links = reproduction.link_inputs({"a": "data/real", "b": "data/real"}, project, rerun, tmp_path / "scratch")
    assert links == [(rerun / "data" / "real", (project / "data" / "real").resolve())]


# --- did it reproduce ---


def points(*values, start=0):
    return [(start + i, 1000 + i, v) for i, v in enumerate(values)]


def test_identical_runs_reproduce_bit_for_bit():
    runs = {"brier": points(0.21063359491095265), "train_loss": points(0.3, 0.2, 0.1, start=1)}
    rows = reproduction.compare(runs, dict(runs))
    assert [(r.metric, r.steps, r.difference) for r in rows] == [("brier", 1, 0.0), ("train_loss", 3, 0.0)]
    assert reproduction.verdict(rows, 0.0) is None


def test_a_last_bit_difference_fails_at_zero_tolerance_and_passes_within_it():
    a = 0.21063359491095265
    b = math.nextafter(a, 1.0)
    rows = reproduction.compare({"brier": points(a)}, {"brier": points(b)})
    assert (
        reproduction.verdict(rows, 0.0) == f"1 of 1 metrics differ beyond tolerance 0 (largest: brier by {b - a:.3g})"
    )
    assert reproduction.verdict(rows, 1e-12) is None


def test_histories_are_compared_step_by_step():
    rows = reproduction.compare({"val_loss": points(0.5, 0.4, 0.3)}, {"val_loss": points(0.5, 0.45, 0.3)})
    (row,) = rows
    assert row.original == row.rerun == 0.3  # the latest values agree...
    assert row.difference == pytest.approx(0.05) and row.note == "worst at step 1"  # ...an earlier epoch does not
    assert not row.ok(0.01)


def test_a_step_logged_twice_keeps_its_latest_value():
    assert reproduction.by_step([(1, 2000, 0.2), (1, 1000, 0.9), (0, 500, 0.1)]) == {0: 0.1, 1: 0.2}


def test_a_metric_missing_on_one_side_is_reported():
    rows = reproduction.compare(
        {"brier": points(0.2), "old_only": points(1.0)}, {"brier": points(0.2), "new_only": points(2.0)}
    )
    assert [(r.metric, r.difference, r.note) for r in rows] == [
        ("brier", 0.0, ""),
        ("new_only", None, "missing in the original"),
        ("old_only", None, "missing in the rerun"),
    ]
    assert reproduction.verdict(rows, 1.0) == "missing on one side: new_only, old_only"


def test_a_missing_step_is_a_difference():
    (row,) = reproduction.compare({"loss": points(0.3, 0.2)}, {"loss": points(0.3)})
    assert row.difference is None and row.note == "step 1 missing in the rerun (1 steps differ)"


def test_nan_equals_nan_but_not_a_number():
    rows = reproduction.compare(
        {"a": points(math.nan), "b": points(math.nan)}, {"a": points(math.nan), "b": points(0.5)}
    )
    assert [r.difference for r in rows] == [0.0, math.inf]


def test_table_shows_full_precision_and_the_verdict():
    rows = reproduction.compare(
        {"brier": points(0.1), "accuracy": points(0.7)}, {"brier": points(0.1), "accuracy": points(0.7000000000000001)}
    )
    lines = reproduction.table(rows, 0.0).splitlines()
    assert lines[0].split() == ["metric", "steps", "original", "rerun", "difference", "result"]
    assert lines[1].split() == ["accuracy", "1", "0.7", "0.7000000000000001", "1.11e-16", "DIFFERS"]
    assert lines[2].split() == ["brier", "1", "0.1", "0.1", "0", "ok"]
