"""The project's Kubernetes variant, checked without a cluster: kubernetes/kubernetes_config.json
and its Job template as MLflow's own kubernetes backend reads and renders them, the Job validated
against Kubernetes' schemas (kubernetes-validate), and the docker_env variant of MLproject that
the sweep hands to MLflow, whose entry points must be the project's own."""

from __future__ import annotations

import json
from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from mlflow.projects import _parse_kubernetes_config
from mlflow.projects._project_spec import load_project
from mlflow.projects.kubernetes import _get_kubernetes_job_definition, _get_run_command
from mlflow.projects.utils import get_entry_point_command

from madness import backends
from steps import _launcher

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "kubernetes" / "kubernetes_config.json"
IMAGE = "localhost:5001/fabric-madness:0123456789ab"
ENTRY_POINTS = ("ingest", "train", "evaluate", "predict", "main", "backtest", "report", "reproduce")
# What MLflow gives a child Job (mlflow.projects.utils.get_run_env_vars), then appends to its env.
MLFLOW_ENV = {
    "MLFLOW_RUN_ID": "r1",
    "MLFLOW_TRACKING_URI": "http://mlflow.fabric-madness:5000",
    "MLFLOW_EXPERIMENT_ID": "1",
}
TRAIN_PARAMS = {"model": "large", "lr": "0.01", "epochs": "100", "threads": "0", "features_uri": "runs:/abc/features"}


@pytest.fixture(scope="module")
def variant():
    """The variant as the sweep writes it, loaded by MLflow."""
    return load_project(str(_launcher.variant_project(IMAGE)))


@pytest.fixture(scope="module")
def project():
    return load_project(str(ROOT))


@pytest.fixture
def job(variant):
    """The Job MLflow's kubernetes backend creates for a train child, from our configuration."""
    config = _parse_kubernetes_config(backends.backend_of("kubernetes", str(CONFIG), "local").config)
    command = get_entry_point_command(variant, "train", TRAIN_PARAMS, None)
    return _get_kubernetes_job_definition(
        variant.name,
        IMAGE,
        "sha256:" + "0" * 64,
        _get_run_command(command),
        dict(MLFLOW_ENV),
        config["kube-job-template"],
    )


def test_the_shipped_configuration_names_an_existing_template_and_a_registry():
    config = backends.backend_of("kubernetes", str(CONFIG), "local").config
    assert Path(config[backends.KUBE_TEMPLATE]) == ROOT / "kubernetes" / "job_template.yaml"
    assert json.loads(CONFIG.read_text())[backends.KUBE_REPOSITORY] == "localhost:5001/fabric-madness"


def test_the_rendered_job_is_valid_for_kubernetes(job):
    kubernetes_validate.validate(job, kubernetes_validate.latest_version(), strict=True)


def test_a_failed_pod_is_not_retried(job):
    assert job["spec"]["backoffLimit"] == 0
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"


def test_the_pod_has_cpu_and_memory_requests_and_limits(job):
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert set(container["resources"]) == {"requests", "limits"}
    for part in container["resources"].values():
        assert set(part) == {"cpu", "memory"}


def test_the_child_takes_its_threads_from_its_pods_cpu_limit(job):
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert "--threads 0" in " ".join(container["command"])  # train reads 0 as the cgroup's limit


def test_credentials_come_from_a_secret_not_the_image_or_the_job(job):
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert container["envFrom"] == [{"secretRef": {"name": "mlflow-tracking", "optional": True}}]
    assert {var["name"] for var in container["env"]} == set(MLFLOW_ENV)


def test_the_job_runs_the_image_by_digest_and_the_entry_points_command(job):
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert container["image"] == IMAGE + "@sha256:" + "0" * 64
    assert container["command"][:6] == ["python", "-m", "steps._unquote", "python", "-m", "steps.train"]
    assert job["metadata"]["namespace"] == "fabric-madness"


def test_the_variant_runs_in_the_image(variant):
    assert variant.docker_env == {"image": IMAGE}
    assert variant.env_type == "docker_env"


def test_the_variant_has_the_projects_name_and_entry_points(variant, project):
    assert variant.name == project.name
    assert tuple(project._entry_points) == ENTRY_POINTS
    assert tuple(variant._entry_points) == ENTRY_POINTS


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_each_entry_point_of_the_variant_is_the_projects_own(variant, project, entry):
    ours, theirs = project.get_entry_point(entry), variant.get_entry_point(entry)
    assert theirs.command == f"{backends.UNQUOTE} {ours.command}"
    assert {name: (p.type, p.default) for name, p in theirs.parameters.items()} == {
        name: (p.type, p.default) for name, p in ours.parameters.items()
    }


def test_the_variant_follows_mlproject_as_it_stands():
    project = yaml.safe_load((ROOT / "MLproject").read_text())
    variant = backends.docker_variant(project, IMAGE)
    assert variant == {
        "name": project["name"],
        "docker_env": {"image": IMAGE},
        "entry_points": {
            entry: {**spec, "command": f"{backends.UNQUOTE} {spec['command']}"}
            for entry, spec in project["entry_points"].items()
        },
    }


@pytest.mark.parametrize("value", ["metrics.brier < 0.25", "", 'it\'s "quoted"', "a  b", "$HOME;*"])
def test_a_parameter_reaches_the_step_exactly_through_the_jobs_command(variant, value):
    """MLflow quotes every word of the Job's command, which no shell reads: steps._unquote undoes it.
    Fails when MLflow stops quoting (then steps._unquote must go)."""
    from steps._unquote import unquoted

    params = {**TRAIN_PARAMS, "features_uri": value}
    words = _get_run_command(get_entry_point_command(variant, "train", params, None))
    assert words[:3] == ["python", "-m", "steps._unquote"]
    command = unquoted(words[3:])
    assert command[command.index("--features_uri") + 1] == value


def test_a_child_tags_its_own_commit_when_mlflow_could_not():
    from madness import git, names
    from steps._entry import commit_tag

    assert commit_tag({}) == {names.TAG_COMMIT: git.head(ROOT)}  # the variant's folder is no repository
    assert commit_tag({names.TAG_COMMIT: "abc"}) == {}  # MLflow's own tag stands


def test_the_job_behind_mlflows_submitted_run_is_found():
    """steps._kubernetes reads the Job's name from MLflow's private attributes: fails when they change."""
    from mlflow.projects.kubernetes import KubernetesSubmittedRun

    from steps._kubernetes import job_of

    assert job_of(KubernetesSubmittedRun("r1", "fabric-madness-2026", "fabric-madness")) == (
        "fabric-madness",
        "fabric-madness-2026",
    )


def pending_pod(waiting_reason=None, scheduled=None):
    from kubernetes.client import (
        V1ContainerState,
        V1ContainerStateWaiting,
        V1ContainerStatus,
        V1Pod,
        V1PodCondition,
        V1PodStatus,
    )

    containers = [
        V1ContainerStatus(
            name="c", image="i", image_id="", ready=False, restart_count=0,
            state=V1ContainerState(waiting=V1ContainerStateWaiting(reason=waiting_reason, message="no such image")),
        )
    ] if waiting_reason else None  # fmt: skip
    conditions = [V1PodCondition(type="PodScheduled", status="False", reason=scheduled)] if scheduled else None
    return V1Pod(status=V1PodStatus(phase="Pending", container_statuses=containers, conditions=conditions))


def test_a_pod_that_cannot_pull_its_image_says_why():
    from steps._kubernetes import why_not_started

    assert why_not_started(pending_pod("ImagePullBackOff")) == "ImagePullBackOff (no such image)"


def test_an_unschedulable_pod_says_why():
    from steps._kubernetes import why_not_started

    assert why_not_started(pending_pod(scheduled="Unschedulable")) == "Unschedulable"


def test_a_pod_on_its_way_is_not_stuck():
    from steps._kubernetes import why_not_started

    assert why_not_started(pending_pod("ContainerCreating")) is None
    assert why_not_started(pending_pod()) is None


def test_the_one_job_project_without_a_docker_engine_is_one_line_and_writes_nothing(tmp_path, monkeypatch, capsys):
    from tools import kubernetes_project

    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-engine.sock")
    assert kubernetes_project.main([str(CONFIG), "--dir", str(tmp_path / "project")]) == 1
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("error: no Docker engine to build the image localhost:5001/fabric-madness:")
    assert not (tmp_path / "project").exists()


def test_the_one_job_project_with_an_unreadable_configuration_is_one_line(tmp_path, capsys):
    from tools import kubernetes_project

    assert kubernetes_project.main([str(tmp_path / "missing.json"), "--dir", str(tmp_path / "project")]) == 1
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("error: backend_config ") and "cannot be read" in line
    assert not (tmp_path / "project").exists()


@pytest.mark.parametrize(
    ("words", "says"),
    [
        (["-P", "models=small"], "-P and --experiment-name are for --run"),
        (["--run", "-P", "models"], "expected name=value, got 'models'"),
    ],
    ids=["parameters-without-run", "parameter-without-value"],
)
def test_the_one_job_commands_words_are_checked_before_anything_is_built(tmp_path, capsys, words, says):
    from tools import kubernetes_project

    with pytest.raises(SystemExit) as exited:
        kubernetes_project.main([str(CONFIG), "--dir", str(tmp_path / "project"), *words])
    assert exited.value.code == 2
    assert says in capsys.readouterr().err.splitlines()[-1]
    assert not (tmp_path / "project").exists()


def test_the_one_job_run_on_a_store_on_this_machine_is_one_line_and_writes_nothing(tmp_path, capsys):
    """The session's store is a SQLite file, which a pod does not have."""
    from tools import kubernetes_project

    assert kubernetes_project.main([str(CONFIG), "--dir", str(tmp_path / "project"), "--run"]) == 1
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("error: backend=kubernetes runs in pods that track to MLFLOW_TRACKING_URI, and sqlite:///")
    assert line.endswith(
        "is a store on this machine, not in a pod: give a tracking server the pods can reach (make server; docs/kubernetes.md)"
    )
    assert not (tmp_path / "project").exists()
