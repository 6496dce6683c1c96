"""The reproduce step: its one-line errors, and real reruns of real train runs of a temporary copy of
this repository (in this process, through `mlflow run`, and from a git:// URL served on loopback)."""

from __future__ import annotations

import io
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from types import SimpleNamespace

import mlflow
import mlflow.projects
import pytest

from conftest import run_cli, subprocess_env
from madness import names, synthetic
from madness import reproduce as reproduction
from repos import commit_all, git, worktrees
from steps import reproduce as step
from tools import sandbox

# --- the step in-process: errors before any rerun ---


@pytest.fixture(scope="module")
def shared_store(tmp_path_factory):
    """One store for this module, with an experiment "in-process"."""
    folder = tmp_path_factory.mktemp("store")
    with sandbox.temp_store(folder, "in-process") as (uri, experiment):
        yield SimpleNamespace(uri=uri, experiment=experiment, folder=folder)


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
    run = client.create_run(os.environ["MLFLOW_EXPERIMENT_ID"], tags={names.TAG_ENTRY_POINT: "train"})
    line = failure(capsys, ["--run_id", run.info.run_id])
    assert line == (
        f"error: run {run.info.run_id} has no git commit (tag mlflow.source.git.commit): it was not "
        "started from a git repository, so the code it ran cannot be checked out"
    )


def test_run_without_entry_point_is_a_one_line_error(tracking, capsys):
    run = mlflow.MlflowClient().create_run(os.environ["MLFLOW_EXPERIMENT_ID"], tags={names.TAG_COMMIT: "a" * 40})
    assert "records no entry point" in failure(capsys, ["--run_id", run.info.run_id])


def test_bad_tolerance_is_refused(tracking, capsys):
    with pytest.raises(SystemExit) as exit_:
        step.main(["--run_id", "x", "--tolerance", "-1"])
    assert exit_.value.code == 2
    assert "tolerance must be >= 0, got -1.0" in capsys.readouterr().err


# --- real reruns: a temporary repository, real training, real `mlflow run` ---

TRAIN_ARGS = ["--model", "small", "--epochs", "2", "--league", "W", "--data", "data/kaggle"]


@pytest.fixture(scope="module")
def history(tmp_path_factory, shared_store):
    """A copy of this project (working tree included) committed twice, a train run at each commit.

    Both runs read Kaggle-format files (the synthetic women's league written out) from data/kaggle,
    which git ignores, so a checkout of either commit lacks it. The first run, from the clean tree
    of the first commit, also holds a param `stray`, logged afterwards, that `train` does not
    declare. The second commit swaps the small network for a narrower one; the second run ran from
    a working tree with uncommitted changes, one of which narrows it further still, so its commit's
    code gives other metrics from the same params. Those changes stay.
    """
    base = tmp_path_factory.mktemp("reproduce")
    repo = sandbox.snapshot(base / "repo", history=False)
    git(repo, "init", "-q", "-b", "main")
    first = commit_all(repo, "the code that made the first run")
    synthetic.write_league(repo / "data" / "kaggle", 42, ("W",))
    assert git(repo, "status", "--porcelain") == ""  # data/kaggle is ignored

    uri = shared_store.uri
    client = mlflow.MlflowClient(tracking_uri=uri)

    def experiment(name: str) -> str:
        # Each with its own artifact folder: one the step created would default to ./mlruns here.
        return client.create_experiment(name, artifact_location=(base / "artifacts" / name).as_uri())

    experiment_id = experiment("end-to-end")
    env = {"MLFLOW_TRACKING_URI": uri, "MLFLOW_EXPERIMENT_ID": experiment_id, "PYTHONPATH": ""}
    train = [sys.executable, "-m", "steps.train", *TRAIN_ARGS]

    def train_run(cwd) -> str:
        done = run_cli(train, cwd=cwd, env=env)
        assert done.returncode == 0, done.stderr[-2000:]
        return done.stdout.split("train run ")[1].split(":")[0]

    first_run = train_run(repo)
    client.log_param(first_run, "stray", "1")
    with (repo / "madness" / "model.py").open("a") as file:
        file.write('\nARCHITECTURES["small"] = (8,)  # the later commit: a narrower network\n')
    second = commit_all(repo, "a narrower small network")
    (repo / "scratch.txt").write_text("not committed\n")
    with (repo / "madness" / "model.py").open("a") as file:
        file.write('ARCHITECTURES["small"] = (4,)  # uncommitted: narrower still\n')
    second_run = train_run(repo)
    yield SimpleNamespace(
        repo=repo,
        base=base,
        first=first,
        second=second,
        first_run=first_run,
        second_run=second_run,
        uri=uri,
        experiment=experiment_id,
        env=env,
        elsewhere=experiment("elsewhere"),
        dirty=experiment("dirty"),
        remote=experiment("remote"),
    )


def reproduce(uri: str, *argv: str, path: str | None = None) -> SimpleNamespace:
    """`steps.reproduce.main(argv)` in this process, for real: exit code, output, the rerun it reports."""
    out, err = io.StringIO(), io.StringIO()
    code = 0
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", uri)
        mp.setenv("PYTHONPATH", "")  # the rerun imports the checkout's code, never this one's
        for name in ("MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME"):
            mp.delenv(name, raising=False)
        if path is not None:
            mp.setenv("PATH", path)
        mlflow.set_tracking_uri(uri)
        try:
            with redirect_stdout(out), redirect_stderr(err):
                step.main(list(argv))
        except SystemExit as exit_:
            code = exit_.code
        finally:
            while mlflow.active_run():
                mlflow.end_run()
            mlflow.set_tracking_uri(None)
        path_after = os.environ["PATH"]
    text = out.getvalue()
    found = re.search(r"against run (\w+) \(rerun\)", text)
    return SimpleNamespace(
        code=code, out=text, err=err.getvalue(), path_after=path_after, rerun=found.group(1) if found else None
    )


def path_without_this_interpreter() -> str:
    """PATH without this venv's bin: a rerun's `python` is then this interpreter only if the step
    puts it first. Outside a venv PATH stays (its bin also holds git and the shell)."""
    path = os.environ.get("PATH", "")
    if sys.prefix == sys.base_prefix:
        return path
    here = Path(sys.executable).parent.resolve()
    return os.pathsep.join(p for p in path.split(os.pathsep) if p and Path(p).resolve() != here)


def repo_state(repo: Path) -> tuple:
    return (
        git(repo, "rev-parse", "--abbrev-ref", "HEAD"),
        git(repo, "rev-parse", "HEAD"),
        git(repo, "status", "--porcelain"),
        worktrees(repo),
        git(repo, "remote"),
    )


def table_rows(out: str) -> dict[str, list[str]]:
    """The printed comparison table, row by metric name."""
    lines = out.split("(rerun), tolerance ")[1].splitlines()[1:]
    rows = {}
    for line in lines[1:]:
        if not line.strip() or line.startswith("reproduced:"):
            break
        cells = line.split()
        rows[cells[0]] = cells
    return rows


def histories_of(client, run_id: str) -> dict[str, reproduction.Points]:
    return step.histories(client, client.get_run(run_id))


@pytest.fixture(scope="module")
def first_reproduced(history):
    """`mlflow run <repo> -e reproduce -P run_id=<the first run>` from the repository's working tree."""
    before = repo_state(history.repo)
    started = time.perf_counter()
    done = run_cli(
        [
            "mlflow",
            "run",
            str(history.repo),
            "-e",
            "reproduce",
            "-P",
            f"run_id={history.first_run}",
            "--env-manager",
            "local",
        ],
        cwd=history.repo,
        env=history.env,
    )
    seconds = time.perf_counter() - started
    reruns = re.findall(r"reproduced: rerun (\w+) matches", done.stdout)
    return SimpleNamespace(
        done=done,
        before=before,
        after=repo_state(history.repo),
        seconds=seconds,
        rerun=reruns[0] if len(reruns) == 1 else None,
    )


@pytest.mark.slow
def test_mlflow_run_reproduces_a_past_run_bit_for_bit_from_its_commit(history, first_reproduced):
    done = first_reproduced.done
    assert done.returncode == 0, done.stderr[-3000:]
    before = first_reproduced.before
    assert before[4] == "" and before[2]  # no remote; uncommitted changes that must survive
    assert first_reproduced.after == before  # branch, commit, uncommitted changes, worktrees, remotes

    client = mlflow.MlflowClient(tracking_uri=history.uri)
    rerun = client.get_run(first_reproduced.rerun)
    original = client.get_run(history.first_run)
    fresh = client.get_run(history.second_run)
    assert rerun.info.status == "FINISHED" and rerun.data.tags[names.TAG_REPRODUCES] == history.first_run
    assert rerun.info.experiment_id == original.info.experiment_id  # by default, the original's experiment
    assert rerun.info.run_name == f"{original.info.run_name}_rerun"
    assert rerun.data.tags[names.TAG_COMMIT] == original.data.tags[names.TAG_COMMIT] == history.first
    assert rerun.data.tags[names.TAG_PROJECT_ENTRY_POINT] == "train"
    assert fresh.data.tags[names.TAG_COMMIT] == history.second
    assert rerun.data.metrics == original.data.metrics
    assert fresh.data.metrics[names.BRIER] != original.data.metrics[names.BRIER]  # the working tree's code does differ
    losses = [[m.value for m in client.get_metric_history(r.info.run_id, names.VAL_LOSS)] for r in (original, rerun)]
    assert losses[0] == losses[1] and len(losses[0]) == 2
    # Every declared param as the original logged it; `stray`, not declared, is left out with a warning.
    assert reproduction.unquote_params(rerun.data.params, shell_quoted=True) == {
        k: v for k, v in original.data.params.items() if k != "stray"
    }
    assert "warning: params not declared by entry point 'train' at that commit, left out: stray" in done.stdout
    # The git-ignored data folder the `data` param names is linked into the checkout, and read there.
    assert f"linked repo/data/kaggle -> {(history.repo / 'data' / 'kaggle').resolve()}" in done.stdout
    assert rerun.data.tags[names.TAG_DATA_DIGEST] == original.data.tags[names.TAG_DATA_DIGEST]
    worktree = Path(reproduction.parse_source(rerun.data.tags[names.TAG_SOURCE_NAME]).location)  # a local checkout
    assert (
        worktree.name == "repo"
        and worktree.parent.name.startswith(reproduction.WORKTREE_PREFIX)
        and not worktree.parent.exists()
    )
    parent = client.get_run(rerun.data.tags[names.TAG_PARENT_RUN])
    assert parent.data.tags[names.TAG_ENTRY_POINT] == "reproduce" and parent.data.params["env_manager"] == "''"
    assert "uncommitted changes" not in done.stdout  # the original ran from a clean tree
    assert (
        f"reproduced: rerun {rerun.info.run_id} matches run {history.first_run} "
        f"on {len(original.data.metrics)} metrics bit for bit"
    ) in done.stdout
    assert f"{names.BRIER} " in done.stdout and "DIFFERS" not in done.stdout
    print(f"reproduce via mlflow run: {first_reproduced.seconds:.0f} s")


@pytest.mark.slow
def test_a_rerun_whose_worktree_is_gone_is_found_through_its_original(history, first_reproduced):
    """In this process, with a PATH that lacks this interpreter: the rerun of the first run, reproduced."""
    client = mlflow.MlflowClient(tracking_uri=history.uri)
    earlier = client.get_run(first_reproduced.rerun)
    assert not Path(reproduction.parse_source(earlier.data.tags[names.TAG_SOURCE_NAME]).location).exists()
    assert earlier.data.params["features_uri"] == "''"  # logged shell-quoted by MLflow: unquoted for the rerun
    before = repo_state(history.repo)
    path = path_without_this_interpreter()
    done = reproduce(
        history.uri, "--run_id", earlier.info.run_id, "--env_manager", "", "--experiment", "elsewhere", path=path
    )
    assert done.code == 0, done.err[-3000:]
    rerun = client.get_run(done.rerun)
    assert rerun.info.status == "FINISHED" and rerun.data.tags[names.TAG_REPRODUCES] == earlier.info.run_id
    assert rerun.data.tags[names.TAG_COMMIT] == history.first
    assert rerun.info.experiment_id == history.elsewhere
    assert f"checking out commit {history.first[:12]} of {history.repo} in a temporary worktree" in done.out
    assert f"linked repo/data/kaggle -> {(history.repo / 'data' / 'kaggle').resolve()}" in done.out
    assert not Path(reproduction.parse_source(rerun.data.tags[names.TAG_SOURCE_NAME]).location).parent.exists()
    assert repo_state(history.repo) == before
    # None recorded: local. The rerun's `python` was this interpreter although PATH lacked it; PATH is restored.
    assert ", env_manager local, " in done.out and done.path_after == path
    assert rerun.data.metrics == earlier.data.metrics
    brier = repr(earlier.data.metrics[names.BRIER])
    assert table_rows(done.out)[names.BRIER] == [names.BRIER, "1", brier, brier, "0", "ok"]
    assert done.out.strip().splitlines()[-1] == (
        f"reproduced: rerun {done.rerun} matches run {earlier.info.run_id} on {len(earlier.data.metrics)} metrics bit for bit"
    )
    parent = client.get_run(rerun.data.tags[names.TAG_PARENT_RUN])
    assert parent.data.tags[names.TAG_ENTRY_POINT] == "reproduce" and parent.info.status == "FINISHED"
    comparison = mlflow.artifacts.load_text(f"{parent.info.artifact_uri}/{names.COMPARISON_FILE}")
    assert comparison.strip() and comparison.strip() in done.out


@pytest.fixture(scope="module")
def dirty_rerun(history):
    """The second run (uncommitted code) reproduced from its commit, into experiment `dirty`."""
    done = reproduce(history.uri, "--run_id", history.second_run, "--experiment", "dirty")
    return SimpleNamespace(done=done, after=repo_state(history.repo))


@pytest.mark.slow
def test_a_difference_fails_with_the_table_printed(history, dirty_rerun):
    done = dirty_rerun.done
    assert done.code == 1, done.err[-3000:]
    assert (
        f"warning: run {history.second_run} ran from a working tree with uncommitted changes (git.dirty=true): "
        f"commit {history.second[:12]} is not exactly the code that ran"
    ) in done.out
    client = mlflow.MlflowClient(tracking_uri=history.uri)
    original, rerun = client.get_run(history.second_run), client.get_run(done.rerun)
    assert rerun.info.status == "FINISHED" and rerun.info.experiment_id == history.dirty
    assert rerun.data.tags[names.TAG_COMMIT] == history.second
    rows = reproduction.compare(histories_of(client, history.second_run), histories_of(client, done.rerun))
    problem = reproduction.verdict(rows, 0.0)
    assert problem and problem.startswith(
        f"{sum(r.difference != 0 for r in rows)} of {len(rows)} metrics differ beyond tolerance 0"
    )
    assert done.err.strip().splitlines()[-1] == f"error: not reproduced: {problem}; rerun {done.rerun}"
    printed = table_rows(done.out)
    a, b = original.data.metrics[names.BRIER], rerun.data.metrics[names.BRIER]
    assert a != b  # the network the commit holds is not the one that ran
    assert printed[names.BRIER] == [names.BRIER, "1", repr(a), repr(b), f"{abs(b - a):.3g}", "DIFFERS"]
    assert printed[names.BASELINE_BRIER][-1] == "ok"  # the same data: the seed baseline does not move
    assert printed[names.VAL_LOSS][1] == "2"  # compared epoch by epoch
    parent = client.get_run(rerun.data.tags[names.TAG_PARENT_RUN])
    assert parent.info.status == "FAILED"
    assert "DIFFERS" in mlflow.artifacts.load_text(f"{parent.info.artifact_uri}/{names.COMPARISON_FILE}")
    assert dirty_rerun.after[3] == [str(history.repo)]  # its worktree is gone


@pytest.mark.slow
def test_tolerance_accepts_a_small_difference(history, dirty_rerun):
    """The same rerun again, allowed exactly the largest difference the first one showed."""
    client = mlflow.MlflowClient(tracking_uri=history.uri)
    rows = reproduction.compare(histories_of(client, history.second_run), histories_of(client, dirty_rerun.done.rerun))
    largest = max(row.difference for row in rows)
    assert largest > 0
    done = reproduce(history.uri, "--run_id", history.second_run, "--experiment", "dirty", "--tolerance", repr(largest))
    assert done.code == 0, done.err[-3000:]
    printed = table_rows(done.out)
    assert printed[names.BRIER][-1] == "ok" and printed[names.BRIER][4] != "0"
    assert done.out.endswith(
        f"reproduced: rerun {done.rerun} matches run {history.second_run} on {len(rows)} metrics within {largest!r}\n"
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def served(history, tmp_path):
    """The temporary repository served read-only by `git daemon` on loopback: git://127.0.0.1:<port>/repo."""
    port = free_port()
    log = (tmp_path / "daemon.log").open("w")
    daemon = subprocess.Popen(
        [
            "git",
            "daemon",
            "--export-all",
            f"--base-path={history.base}",
            "--reuseaddr",
            "--listen=127.0.0.1",
            f"--port={port}",
            str(history.base),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"git://127.0.0.1:{port}/{history.repo.name}"
    try:
        deadline = time.monotonic() + 30
        while subprocess.run(["git", "ls-remote", url], capture_output=True, check=False).returncode != 0:
            if daemon.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"git daemon did not serve {url}: {(tmp_path / 'daemon.log').read_text()[-2000:]}")
            time.sleep(0.2)
        yield url
    finally:
        daemon.terminate()
        try:
            daemon.wait(timeout=10)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait()
        log.close()


@pytest.mark.slow
def test_a_remote_run_is_rerun_from_its_url_at_its_commit(history, served, tmp_path, monkeypatch):
    # The original: `mlflow run <git URL> --version <commit>`, not the branch's latest commit.
    launched = run_cli(
        [
            "mlflow",
            "run",
            served,
            "--version",
            history.first,
            "-e",
            "train",
            "-P",
            "model=small",
            "-P",
            "epochs=2",
            "-P",
            "league=W",
            "--env-manager",
            "local",
            "--experiment-id",
            history.remote,
        ],
        cwd=tmp_path,
        env={**history.env, "TMPDIR": str(tmp_path)},
    )
    assert launched.returncode == 0, launched.stderr[-3000:]
    client = mlflow.MlflowClient(tracking_uri=history.uri)
    (original,) = client.search_runs([history.remote])
    assert original.data.tags[names.TAG_SOURCE_NAME] == served and original.data.tags[names.TAG_COMMIT] == history.first
    assert original.data.params["features_uri"] == "''"

    before = repo_state(history.repo)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # MLflow's clone goes here, not in /tmp
    done = reproduce(history.uri, "--run_id", original.info.run_id)
    assert done.code == 0, done.err[-3000:]
    assert f"at commit {history.first[:12]} of {served} (remote)" in done.out
    rerun = client.get_run(done.rerun)
    assert rerun.data.tags[names.TAG_SOURCE_NAME] == served  # fetched from the URL, not checked out locally
    assert rerun.data.tags[names.TAG_COMMIT] == history.first and rerun.info.experiment_id == history.remote
    assert rerun.data.tags[names.TAG_REPRODUCES] == original.info.run_id
    assert rerun.data.params == original.data.params  # all of them, as `mlflow run` logs them
    assert rerun.data.metrics == original.data.metrics
    assert done.out.endswith(f"on {len(original.data.metrics)} metrics bit for bit\n")
    assert repo_state(history.repo) == before


@pytest.mark.slow
def test_a_failed_rerun_removes_its_worktree(history):
    client = mlflow.MlflowClient(tracking_uri=history.uri)
    original = client.create_run(
        history.experiment,
        tags={
            names.TAG_COMMIT: history.first,
            names.TAG_ENTRY_POINT: "ingest",
            names.TAG_DIRTY: "true",
            names.TAG_SOURCE_NAME: str(history.repo / "steps" / "ingest.py"),
        },
    )
    client.log_param(original.info.run_id, "league", "X")  # refused by the step at that commit
    before = repo_state(history.repo)
    done = run_cli(
        [sys.executable, "-m", "steps.reproduce", "--run_id", original.info.run_id], cwd=history.repo, env=history.env
    )
    assert done.returncode == 1
    (line,) = done.stderr.strip().splitlines()[-1:]
    (rerun,) = client.search_runs([history.experiment], f"tags.{names.TAG_REPRODUCES} = '{original.info.run_id}'")
    assert line == (
        f"error: the rerun {rerun.info.run_id} of run {original.info.run_id} at commit {history.first[:12]} "
        f"failed: Run (ID '{rerun.info.run_id}') failed"
    )
    assert rerun.info.status == "FAILED"
    assert "ran from a working tree with uncommitted changes (git.dirty=true)" in done.stdout
    assert repo_state(history.repo) == before


def rerun_started(client, history) -> bool:
    """Whether the reproduction of the second run has created its rerun (MLflow does so just
    before it starts the rerun's command)."""
    runs = client.search_runs(
        [history.experiment], f"params.run_id = '{history.second_run}' and tags.{names.TAG_ENTRY_POINT} = 'reproduce'"
    )
    return bool(runs) and bool(
        client.search_runs([history.experiment], f"tags.`{names.TAG_PARENT_RUN}` = '{runs[0].info.run_id}'")
    )


@pytest.mark.slow
def test_sigterm_stops_the_rerun_and_removes_the_worktree(history):
    client = mlflow.MlflowClient(tracking_uri=history.uri)
    before = repo_state(history.repo)
    proc = subprocess.Popen(
        [sys.executable, "-m", "steps.reproduce", "--run_id", history.second_run],
        cwd=history.repo,
        env=subprocess_env(history.env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while not rerun_started(client, history) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert len(worktrees(history.repo)) == 2
        time.sleep(1)  # the rerun's command is starting
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err[-2000:]
    assert err.strip().splitlines()[-1] == "error: interrupted (signal SIGTERM)"
    assert repo_state(history.repo) == before
    reruns = client.search_runs([history.experiment], f"tags.{names.TAG_REPRODUCES} = '{history.second_run}'")
    assert [r.info.status for r in reruns] == ["KILLED"]
