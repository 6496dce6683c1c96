"""madness.backends: the backend a sweep's children run on, its configuration, and the cores a
training may use (a container's or pod's CPU limit)."""

from __future__ import annotations

import json
import os

import pytest

from madness import backends, names
from madness.errors import UserError


def write_config(folder, **entries):
    (folder / "job.yaml").write_text("apiVersion: batch/v1\nkind: Job\n")
    config = {backends.KUBE_TEMPLATE: "job.yaml", backends.KUBE_REPOSITORY: "localhost:5001/fabric-madness", **entries}
    path = folder / "kubernetes_config.json"
    path.write_text(json.dumps(config))
    return path


def test_the_local_backend_takes_no_configuration():
    assert backends.backend_of("local", "", "uv") == backends.Backend("local", {}, "uv")


def test_an_unknown_backend_names_those_accepted():
    with pytest.raises(UserError, match=r"^unknown backend 'docker'; accepted: local, kubernetes$"):
        backends.backend_of("docker", "", "local")


def test_a_configuration_given_to_the_local_backend_is_refused():
    with pytest.raises(UserError, match=r"^backend_config is for backend=kubernetes; backend=local takes none"):
        backends.backend_of("local", "kubernetes_config.json", "local")


def test_kubernetes_without_a_configuration_says_what_it_needs():
    with pytest.raises(
        UserError, match="needs backend_config: a JSON file naming kube-job-template-path and repository-uri"
    ):
        backends.backend_of("kubernetes", " ", "local")


def test_a_relative_job_template_is_read_from_the_configurations_folder(tmp_path, monkeypatch):
    path = write_config(tmp_path, **{backends.KUBE_CONTEXT: "kind-madness"})
    monkeypatch.chdir(tmp_path.parent)  # the sweep runs elsewhere
    backend = backends.backend_of("kubernetes", str(path), "local")
    assert backend.config == {
        backends.KUBE_TEMPLATE: str(tmp_path / "job.yaml"),
        backends.KUBE_REPOSITORY: "localhost:5001/fabric-madness",
        backends.KUBE_CONTEXT: "kind-madness",
    }


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (None, "cannot be read: No such file or directory"),
        ("{not json", "is not JSON: Expecting property name enclosed in double quotes at line 1"),
        ("[]", "must hold a JSON object, got list"),
        (json.dumps({backends.KUBE_TEMPLATE: "job.yaml"}), "lacks repository-uri; it needs kube-job-template-path"),
        (
            json.dumps({backends.KUBE_REPOSITORY: "r", backends.KUBE_TEMPLATE: "gone.yaml"}),
            "gone.yaml' named by backend_config",
        ),
        (
            json.dumps({backends.KUBE_REPOSITORY: "r", backends.KUBE_TEMPLATE: "job.yaml", backends.POD_START: "60"}),
            "pod-start-seconds in '",
        ),
        (
            json.dumps({backends.KUBE_REPOSITORY: "r", backends.KUBE_TEMPLATE: "job.yaml", backends.POD_START: 0}),
            "must be a positive number of seconds, got 0",
        ),
    ],
    ids=["missing", "not-json", "not-object", "no-repository", "no-template", "pod-start-text", "pod-start-zero"],
)
def test_a_bad_kubernetes_configuration_is_one_line_naming_the_file(tmp_path, content, says):
    path = tmp_path / "kubernetes_config.json"
    (tmp_path / "job.yaml").write_text("kind: Job\n")
    if content is not None:
        path.write_text(content)
    with pytest.raises(UserError) as raised:
        backends.backend_of("kubernetes", str(path), "local")
    assert says in str(raised.value) and "\n" not in str(raised.value)


def test_a_pod_may_say_it_cannot_start_for_a_minute_unless_the_configuration_says_otherwise():
    assert backends.pod_start_seconds({}) == 60.0
    assert backends.pod_start_seconds({backends.POD_START: 10}) == 10.0


# --- the cores a training may use ---


def cgroup(tmp_path, v2=None, v1=None):
    if v2 is not None:
        (tmp_path / "cpu.max").write_text(v2)
    if v1 is not None:
        (tmp_path / "cpu").mkdir()
        (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text(f"{v1[0]}\n")
        (tmp_path / "cpu" / "cpu.cfs_period_us").write_text(f"{v1[1]}\n")
    return tmp_path


@pytest.mark.parametrize(
    ("v2", "v1", "quota"),
    [
        ("max 100000\n", None, None),
        ("150000 100000\n", None, 1.5),
        ("50000 100000\n", None, 0.5),
        (None, (-1, 100000), None),
        (None, (400000, 100000), 4.0),
        (None, None, None),
    ],
    ids=["v2-none", "v2-1.5", "v2-half", "v1-none", "v1-4", "no-cgroup"],
)
def test_the_cpu_limit_is_read_from_cgroup_v2_or_v1(tmp_path, v2, v1, quota):
    assert backends.cpu_quota(cgroup(tmp_path, v2, v1)) == quota


def test_usable_cores_are_the_cpu_limit_rounded_down_and_at_least_one(tmp_path):
    cores = len(os.sched_getaffinity(0))
    assert backends.usable_cores(cgroup(tmp_path / "none")) == cores
    (tmp_path / "half").mkdir()
    assert backends.usable_cores(cgroup(tmp_path / "half", v2="50000 100000")) == 1
    (tmp_path / "many").mkdir()
    assert backends.usable_cores(cgroup(tmp_path / "many", v2="6400000 100000")) == cores  # never above the cores there


# --- the image a Kubernetes child runs ---


def test_the_image_is_the_repository_tagged_with_the_commit():
    config = {backends.KUBE_REPOSITORY: "localhost:5001/fabric-madness"}
    assert backends.image_name(config, "0123456789abcdef0123") == "localhost:5001/fabric-madness:0123456789ab"


def test_the_image_of_a_dirty_tree_is_tagged_with_its_state():
    config = {backends.KUBE_REPOSITORY: "localhost:5001/fabric-madness"}
    state = {names.TAG_DIRTY: "true", names.TAG_STATE: "feedface" * 8}
    assert (
        backends.image_name(config, "0123456789abcdef", state)
        == "localhost:5001/fabric-madness:0123456789ab-dirty-feedfacefeed"
    )
    assert backends.image_name(config, "0123456789abcdef", {**state, names.TAG_DIRTY: "false"}).endswith(
        ":0123456789ab"
    )


def test_a_project_without_a_commit_has_no_image_to_run():
    with pytest.raises(UserError, match="runs the image built from a git commit, and this project has none"):
        backends.image_name({backends.KUBE_REPOSITORY: "r"}, None)


def test_the_docker_variant_drops_the_environment_mlflow_would_build():
    project = {"name": "p", "conda_env": "conda.yaml", "entry_points": {"main": {"command": "python -m x"}}}
    assert backends.docker_variant(project, "r:1") == {
        "name": "p",
        "docker_env": {"image": "r:1"},
        "entry_points": {"main": {"command": "python -m steps._unquote python -m x"}},
    }
