"""The Kubernetes sweep end to end on the local cluster (`make cluster`, tools/cluster.py): the
image built from the Dockerfile and pushed, every child a Job whose pod tracks to a real team
server, and what MLflow's kubernetes backend gets wrong handled (steps._unquote, steps._kubernetes);
and the whole sweep as one Job (tools.kubernetes_project), its pairs local inside the pod, its
pod that never starts ending its run FAILED.

Slow (the image's first build installs the whole lock): marked `slow`. The cluster is brought up
once for the session, or used if it is already up, and stopped afterwards only if started here.
Without root or where docker.io cannot be installed the tests skip with the reason, except under
CI=true, where that is a failure.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import mlflow
import mlflow.projects
import pytest
from mlflow.entities import ViewType

from conftest import ROOT, subprocess_env
from servers import team_server
from stores import ok, snapshot
from tools.teamserver import free_port

pytestmark = pytest.mark.slow

CLUSTER = ROOT / ".cluster"
TIMEOUT = 1200
SWEEP = {"models": "small", "lrs": "0.001,0.01", "epochs": "2", "prefix": "kc"}


def unavailable() -> str | None:
    """Why the local cluster cannot run here, or None."""
    if sys.platform != "linux" or os.geteuid() != 0:
        return "the local cluster runs a Docker engine, which needs root on Linux"
    if shutil.which("dockerd") is None and shutil.which("apt-get") is None:
        return "neither dockerd nor apt-get to install docker.io"
    return None


@pytest.fixture(scope="session")
def cluster():
    """The local cluster's environment (DOCKER_HOST, KUBECONFIG) and backend_config path."""
    reason = unavailable()
    if reason:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason}; CI must run as root where docker.io installs")
        pytest.skip(reason)
    was_up = (CLUSTER / "node.pid").is_file() and (CLUSTER / "env").is_file()
    started = subprocess.run(
        [sys.executable, "-m", "tools.cluster", "start", "--dir", str(CLUSTER)],
        cwd=ROOT, capture_output=True, text=True, timeout=TIMEOUT, check=False,
    )  # fmt: skip
    assert started.returncode == 0, started.stderr
    env = dict(line.removeprefix("export ").split("=", 1) for line in (CLUSTER / "env").read_text().splitlines())
    try:
        yield {**env, "config": str(CLUSTER / "kubernetes_config.json")}
    finally:
        if not was_up:
            subprocess.run([sys.executable, "-m", "tools.cluster", "stop", "--dir", str(CLUSTER)], check=False)


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """The working tree as the tests began: the image is built from it, and the sweep's cache keys
    on its state, which edits made to the repository meanwhile would change."""
    return snapshot(tmp_path_factory.mktemp("project"))


@pytest.fixture(scope="module")
def server():
    with team_server() as server:
        yield server


@pytest.fixture(scope="module")
def env(cluster, server, project):
    return {
        "PROJECT": str(project),
        "PYTHONPATH": str(project),
        "MLFLOW_TRACKING_URI": server.tracking_uri,
        "DOCKER_HOST": cluster["DOCKER_HOST"],
        "KUBECONFIG": cluster["KUBECONFIG"],
    }


def mlflow_run(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["mlflow", "run", ".", "--env-manager", "local", *args],
        cwd=env["PROJECT"], env=subprocess_env(env), capture_output=True, text=True, timeout=TIMEOUT, check=False,
    )  # fmt: skip


def sweep(env: dict, config: str, **params: str) -> subprocess.CompletedProcess:
    params = {**SWEEP, "backend": "kubernetes", "backend_config": config, **params}
    return mlflow_run(env, *(word for name, value in params.items() for word in ("-P", f"{name}={value}")))


@pytest.fixture(scope="module")
def first(env, cluster):
    """The walkthrough's sweep (docs/kubernetes.md) as written, its runs in experiments kc*."""
    page = (ROOT / "docs" / "kubernetes.md").read_text()
    command = next(
        line for line in page.splitlines() if line.startswith("mlflow run . --env-manager local -P backend=")
    )
    (Path(env["PROJECT"]) / ".cluster").mkdir(exist_ok=True)  # the walkthrough's relative backend_config
    shutil.copy2(cluster["config"], Path(env["PROJECT"]) / ".cluster" / "kubernetes_config.json")
    result = subprocess.run(
        [*shlex.split(command), "-P", f"prefix={SWEEP['prefix']}"],
        cwd=env["PROJECT"], env=subprocess_env(env), capture_output=True, text=True, timeout=TIMEOUT, check=False,
    )  # fmt: skip
    ok(result)
    return result


def first_image(env: dict) -> str:
    """The image the first sweep built: the cluster's repository, tagged as the sweep tags it."""
    from madness import git
    from madness.backends import image_name

    config = json.loads((CLUSTER / "kubernetes_config.json").read_text())
    return image_name(config, git.head(env["PROJECT"]), git.state(env["PROJECT"]))


def client(env: dict) -> mlflow.MlflowClient:
    return mlflow.MlflowClient(tracking_uri=env["MLFLOW_TRACKING_URI"])


def pair_runs(env: dict, experiment: str = "kc_small") -> list:
    exp = client(env).get_experiment_by_name(experiment)
    return (
        []
        if exp is None
        else client(env).search_runs([exp.experiment_id], "tags.`mlflow.project.entryPoint` = 'train'")
    )


def test_the_sweep_runs_every_pair_as_a_job_and_ends_with_the_report(first, env):
    assert "2 pairs, 0 reused, 2 to train" in first.stdout
    assert any(line.startswith("best: small with learning rate ") for line in first.stdout.splitlines())
    runs = pair_runs(env)
    assert sorted(run.info.status for run in runs) == ["FINISHED", "FINISHED"]
    assert {run.data.tags.get("mlflow.project.backend") for run in runs} == {"kubernetes"}


def test_the_sweep_again_trains_nothing(first, env, cluster):
    result = sweep(env, cluster["config"])
    ok(result)
    assert "2 pairs, 2 reused, 0 to train" in result.stdout


def test_a_pods_run_reproduces_locally_bit_for_bit(first, env):
    run = pair_runs(env)[0]
    ok(mlflow_run(env, "-e", "reproduce", "-P", f"run_id={run.info.run_id}", "-P", "env_manager=local"))


def walkthrough_line(start: str) -> list[str]:
    """The words of docs/kubernetes.md's command line that starts with `start`."""
    page = (ROOT / "docs" / "kubernetes.md").read_text()
    return shlex.split(next(line for line in page.splitlines() if line.startswith(start)))


def sweep_run(env: dict, prefix: str):
    """The sweep run (entry point main) of the sweep with this prefix, wherever `mlflow run` put it."""
    experiments = [exp.experiment_id for exp in client(env).search_experiments()]
    (run,) = client(env).search_runs(
        experiments, f"tags.`mlflow.project.entryPoint` = 'main' and params.prefix = '{prefix}'"
    )
    return run


def report_table(env: dict, run_id: str):
    """The sweep's report table (report/runs.csv) without what differs from one run to another."""
    import pandas as pd

    path = mlflow.artifacts.download_artifacts(
        run_id=run_id, artifact_path="report/runs.csv", tracking_uri=env["MLFLOW_TRACKING_URI"]
    )
    return pd.read_csv(path).drop(columns=["run_id", "duration_s"])


@pytest.fixture(scope="module")
def one_job(env, cluster):
    """docs/kubernetes.md's whole sweep as one Job, as written: tools.kubernetes_project writes the
    variant and runs it on MLflow's kubernetes backend (experiments kj*)."""
    (Path(env["PROJECT"]) / ".cluster").mkdir(exist_ok=True)
    shutil.copy2(cluster["config"], Path(env["PROJECT"]) / ".cluster" / "kubernetes_config.json")
    result = subprocess.run(
        [*walkthrough_line("python -m tools.kubernetes_project "), "-P", "prefix=kj"],
        cwd=env["PROJECT"], env=subprocess_env(env), capture_output=True, text=True, timeout=TIMEOUT, check=False,
    )  # fmt: skip
    ok(result)
    assert "the sweep's run" in result.stdout and "ended FINISHED" in result.stdout
    return sweep_run(env, "kj")


def test_the_whole_sweep_runs_as_one_job_its_pairs_children_of_its_run(one_job, env):
    assert one_job.info.status == "FINISHED"
    assert one_job.data.tags["mlflow.project.backend"] == "kubernetes"
    children = client(env).search_runs(
        [exp.experiment_id for exp in client(env).search_experiments()],
        f"tags.`mlflow.parentRunId` = '{one_job.info.run_id}'",
    )
    entries = sorted(run.data.tags["mlflow.project.entryPoint"] for run in children)
    assert entries == ["ingest", "train", "train"]
    assert {run.info.status for run in children} == {"FINISHED"}
    # Local inside the pod: MLflow's local backend ran them, on the pod's host (its name).
    assert {run.data.tags.get("mlflow.project.backend") for run in children} == {"local"}
    pod = one_job.data.tags["process.host"]
    assert pod.startswith("fabric-madness-") and {run.data.tags["process.host"] for run in children} == {pod}
    assert {run.info.run_id for run in pair_runs(env, "kj_small")} == {
        run.info.run_id for run in children if run.data.tags["mlflow.project.entryPoint"] == "train"
    }


def test_the_whole_sweep_as_one_job_reports_as_a_local_sweep(one_job, env):
    local = sweep(env, "", backend="local", prefix="kl")
    ok(local)
    one_job_table, local_table = (report_table(env, run.info.run_id) for run in (one_job, sweep_run(env, "kl")))
    assert len(one_job_table) == 2
    assert one_job_table.equals(local_table), f"{one_job_table}\n{local_table}"  # NaN (brier_sd, one seed) equals NaN


@pytest.fixture
def kubernetes_backend(first, env, cluster, monkeypatch):
    """The Backend a Kubernetes sweep launches its children with, in this process, tracking to the
    team server, and the id of the experiment kc."""
    from madness.backends import KUBERNETES, Backend, kubernetes_config

    for name in ("DOCKER_HOST", "KUBECONFIG"):
        monkeypatch.setenv(name, env[name])
    # The kubernetes client reads KUBECONFIG once, when first imported (here, at collection of
    # test_kubernetes.py); a sweep's own process has it from its start.
    monkeypatch.setattr("kubernetes.config.kube_config.KUBE_CONFIG_DEFAULT_LOCATION", env["KUBECONFIG"])
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(env["MLFLOW_TRACKING_URI"])
    try:
        yield (
            Backend(KUBERNETES, kubernetes_config(cluster["config"]), "local", first_image(env)),
            client(env).get_experiment_by_name("kc").experiment_id,
        )
    finally:
        mlflow.set_tracking_uri(previous)


REPORT_PARAMS = {"sweep_run_id": "", "filter": "metrics.brier < 0.25"}


def test_parameters_reach_the_pod_exactly(kubernetes_backend, env):
    """A filter with spaces and `<`, and an empty sweep_run_id (the latest sweep): MLflow shell-quotes
    both for a Job command no shell reads; the report would refuse `'metrics.brier < 0.25'` and `''`."""
    from steps._launcher import submit

    backend, experiment = kubernetes_backend
    child = submit("report", REPORT_PARAMS, experiment, "report", backend)
    assert child.wait()
    assert client(env).get_run(child.run_id).info.status == "FINISHED"


def test_children_submitted_at_once_build_and_push_one_after_the_other(kubernetes_backend, env, monkeypatch):
    """MLflow builds and pushes the same image tag for every child, and Docker's registry answers 500
    to two pushes of one tag at once (seen in CI): a sweep submits its children one at a time."""
    from steps._launcher import submit

    backend, experiment = kubernetes_backend
    real_run, spans = mlflow.projects.run, []

    def timed_run(*args, **kwargs):
        started = time.monotonic()
        try:
            return real_run(*args, **kwargs)
        finally:
            spans.append((started, time.monotonic()))

    monkeypatch.setattr(mlflow.projects, "run", timed_run)
    with ThreadPoolExecutor(2) as pool:
        children = list(pool.map(lambda name: submit("report", REPORT_PARAMS, experiment, name, backend), "ab"))
    assert all(child.wait() for child in children)
    first_span, second_span = sorted(spans)
    assert first_span[1] <= second_span[0], spans


def never_starting_config(folder: Path) -> str:
    """A backend configuration whose pods never start (the Job template's Secret made mandatory, and
    the cluster has none: CreateContainerConfigError), allowed to say so for 10 s."""
    template = (ROOT / "kubernetes" / "job_template.yaml").read_text()
    (folder / "job.yaml").write_text(template.replace("optional: true", "optional: false"))
    config = json.loads((CLUSTER / "kubernetes_config.json").read_text())
    config.update({"kube-job-template-path": str(folder / "job.yaml"), "pod-start-seconds": 10})
    (folder / "config.json").write_text(json.dumps(config))
    return str(folder / "config.json")


def test_a_pod_that_never_starts_fails_its_run_alone_with_the_reason(first, env, cluster, tmp_path):
    started = time.monotonic()
    result = sweep(env, never_starting_config(tmp_path), lrs="0.001,0.01,0.1")
    assert result.returncode != 0
    assert time.monotonic() - started < 180
    assert "small_0.1: FAILED" in result.stdout
    assert "its pod did not start in 10 s: CreateContainerConfigError" in result.stdout
    assert "RUNNING" not in {run.info.status for run in pair_runs(env)}
    again = sweep(env, cluster["config"], lrs="0.001,0.01,0.1")
    ok(again)
    assert "3 pairs, 2 reused, 1 to train" in again.stdout


def test_one_job_whose_pod_never_starts_ends_its_run_failed_with_the_reason(first, env, tmp_path):
    """MLflow's own wait would poll such a Job for ever, its run RUNNING."""
    started = time.monotonic()
    result = subprocess.run(
        [
            sys.executable, "-m", "tools.kubernetes_project", never_starting_config(tmp_path),
            "--dir", str(tmp_path / "variant"), "--run", "-P", "prefix=kn", "-P", "models=small",
            "--experiment-name", "kn-one-job",
        ],
        cwd=env["PROJECT"], env=subprocess_env(env), capture_output=True, text=True, timeout=TIMEOUT, check=False,
    )  # fmt: skip
    assert result.returncode == 1 and time.monotonic() - started < 120, result.stderr
    (error,) = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert "ended FAILED: its pod did not start in 10 s: CreateContainerConfigError" in error, error
    run = sweep_run(env, "kn")
    assert run.info.status == "FAILED"
    assert run.data.tags["ended_by"].startswith("its pod did not start in 10 s")
    assert run.info.experiment_id == client(env).get_experiment_by_name("kn-one-job").experiment_id


def test_one_job_in_a_deleted_experiment_is_one_line_and_submits_no_job(first, env, cluster, tmp_path):
    client(env).delete_experiment(client(env).create_experiment("kd-deleted"))
    result = subprocess.run(
        [
            sys.executable, "-m", "tools.kubernetes_project", cluster["config"], "--dir", str(tmp_path / "variant"),
            "--run", "-P", "prefix=kd", "--experiment-name", "kd-deleted",
        ],
        cwd=env["PROJECT"], env=subprocess_env(env), capture_output=True, text=True, timeout=TIMEOUT, check=False,
    )  # fmt: skip
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    (error,) = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert error.startswith("error: experiment 'kd-deleted': "), error
    assert "deleted" in error, error
    experiments = [exp.experiment_id for exp in client(env).search_experiments(view_type=ViewType.ALL)]
    assert client(env).search_runs(experiments, "params.prefix = 'kd'") == []  # MLflow made no run: no Job


def test_a_sweep_on_a_store_on_this_machine_is_one_line_and_starts_no_pod(first, env, cluster, tmp_path):
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    result = sweep({**env, "MLFLOW_TRACKING_URI": store}, cluster["config"], prefix="kq")
    assert result.returncode != 0 and "Traceback" not in result.stderr
    (error,) = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert error.startswith(f"error: backend=kubernetes runs in pods that track to MLFLOW_TRACKING_URI, and {store} ")
    local = mlflow.MlflowClient(tracking_uri=store)
    assert [
        run.info.status for run in local.search_runs([exp.experiment_id for exp in local.search_experiments()])
    ] == ["FAILED"]  # the sweep's own run, which `mlflow run` made


def docker(env: dict, *args: str) -> str:
    return subprocess.run(["docker", *args], env=subprocess_env(env), capture_output=True, text=True, check=True).stdout


def test_a_refused_push_is_one_line_and_leaves_no_run_running(first, env, tmp_path):
    """The image known only under a registry that refuses the push (MLflow pushes an image's first
    tag, whatever the configured repository: the cluster's own tag is taken off meanwhile)."""
    config = json.loads((CLUSTER / "kubernetes_config.json").read_text())
    refused = f"localhost:{free_port()}/fabric-madness"
    (tmp_path / "config.json").write_text(json.dumps({**config, "repository-uri": refused}))
    image = first_image(env)
    docker(env, "tag", image, refused + image[image.rindex(":") :])
    docker(env, "rmi", image)
    try:
        result = sweep(env, str(tmp_path / "config.json"), prefix="kp", force="true")
    finally:
        docker(env, "tag", refused + image[image.rindex(":") :], image)
        docker(env, "rmi", refused + image[image.rindex(":") :])  # else the next sweep may push to it
    assert result.returncode != 0 and "Traceback" not in result.stderr
    # The sweep's one line; `mlflow run` then says its run failed.
    (error,) = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert error.startswith("error: the ingest run could not start: Error while pushing to docker registry")
    exp = client(env).get_experiment_by_name("kp")
    assert "RUNNING" not in {run.info.status for run in client(env).search_runs([exp.experiment_id])}


def running_containers(env: dict) -> list[str]:
    out = subprocess.run(
        ["docker", "ps", "--quiet"], env=subprocess_env(env), capture_output=True, text=True, check=True
    ).stdout
    return out.split()


def test_stopping_a_sweep_removes_its_pods(first, env, cluster):
    """Ctrl-C: the sweep deletes each child's Job with propagation, so its pod stops too (MLflow's
    cancel would orphan it, still training)."""
    # A pair of 1000 epochs trains in about 12 s on the synthetic league: these would train for minutes.
    params = {**SWEEP, "backend": "kubernetes", "backend_config": cluster["config"], "epochs": "100000", "prefix": "ks"}
    sweeping = subprocess.Popen(
        ["mlflow", "run", ".", "--env-manager", "local", *(w for k, v in params.items() for w in ("-P", f"{k}={v}"))],
        cwd=env["PROJECT"], env=subprocess_env(env), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 300
        while not any(run.info.status == "RUNNING" for run in pair_runs(env, "ks_small")):
            assert sweeping.poll() is None and time.monotonic() < deadline, "no pair started"
            time.sleep(2)
        time.sleep(10)  # the pods are running
        assert running_containers(env)
        os.killpg(sweeping.pid, signal.SIGINT)
        sweeping.wait(timeout=120)
    finally:
        if sweeping.poll() is None:
            os.killpg(sweeping.pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while running_containers(env) and time.monotonic() < deadline:
        time.sleep(1)
    assert running_containers(env) == []
    assert {run.info.status for run in pair_runs(env, "ks_small")} == {"KILLED"}
