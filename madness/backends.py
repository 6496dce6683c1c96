"""Where a sweep's children run: an MLflow Projects backend, its configuration, and the cores a
training may use there. Checked before anything is launched, each problem one line."""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

from madness import names
from madness.errors import UserError

LOCAL, KUBERNETES = "local", "kubernetes"
BACKENDS = (LOCAL, KUBERNETES)
# What MLflow's kubernetes backend reads from its configuration (mlflow.projects._parse_kubernetes_config).
KUBE_TEMPLATE, KUBE_REPOSITORY, KUBE_CONTEXT = "kube-job-template-path", "repository-uri", "kube-context"
# Ours, which MLflow ignores: how long a pod may say why it cannot start before its run fails. A
# kubelet retries a failed pull 10 s, 20 s, 40 s apart: enough for a registry's hiccup, not for an
# image that is not there.
POD_START = "pod-start-seconds"
POD_START_DEFAULT = 60.0
CGROUP = Path("/sys/fs/cgroup")
# What runs each command of a Kubernetes child: steps/_unquote.py.
UNQUOTE = "python -m steps._unquote"


@dataclass(frozen=True)
class Backend:
    """Where a sweep's children run: MLflow backend, its configuration, their env manager, image (kubernetes)."""

    name: str = LOCAL
    config: dict = field(default_factory=dict)
    env_manager: str = "local"
    image: str = ""  # kubernetes: the project's image at this commit (image_name)


def backend_of(name: str, config_path: str, env_manager: str) -> Backend:
    """Return the backend `name` with its configuration read from the JSON file `config_path` (local
    takes none); raise UserError naming what is wrong and what is accepted."""
    if name not in BACKENDS:
        raise UserError(f"unknown backend {name!r}; accepted: {', '.join(BACKENDS)}")
    if name == LOCAL:
        if config_path.strip():
            raise UserError(
                f"backend_config is for backend={KUBERNETES}; backend={LOCAL} takes none, got {config_path!r}"
            )
        return Backend(LOCAL, {}, env_manager)
    return Backend(name, kubernetes_config(config_path), env_manager)


def kubernetes_config(config_path: str) -> dict:
    """Return kubernetes_config.json as MLflow wants it, its Job template's path made absolute (a relative
    one is read from the configuration file's folder, wherever the sweep runs)."""
    if not config_path.strip():
        raise UserError(
            f"backend={KUBERNETES} needs backend_config: a JSON file naming {KUBE_TEMPLATE} and {KUBE_REPOSITORY}"
        )
    path = Path(config_path).expanduser()
    try:
        config = json.loads(path.read_text())
    except OSError as err:
        raise UserError(f"backend_config {config_path!r} cannot be read: {err.strerror or err}") from None
    except json.JSONDecodeError as err:
        raise UserError(f"backend_config {config_path!r} is not JSON: {err.msg} at line {err.lineno}") from None
    if not isinstance(config, dict):
        raise UserError(f"backend_config {config_path!r} must hold a JSON object, got {type(config).__name__}")
    missing = [key for key in (KUBE_TEMPLATE, KUBE_REPOSITORY) if not str(config.get(key) or "").strip()]
    if missing:
        raise UserError(
            f"backend_config {config_path!r} lacks {', '.join(missing)}; it needs {KUBE_TEMPLATE} (the Job template), "
            f"{KUBE_REPOSITORY} (where the image is pushed) and may name {KUBE_CONTEXT}"
        )
    pod_start_seconds(config, config_path)
    template = Path(config[KUBE_TEMPLATE]).expanduser()
    template = template if template.is_absolute() else path.resolve().parent / template
    if not template.is_file():
        raise UserError(f"the Job template {str(template)!r} named by backend_config {config_path!r} does not exist")
    return {**config, KUBE_TEMPLATE: str(template)}


def pod_start_seconds(config: dict, config_path: str = "backend_config") -> float:
    """Return how long a pod may say it cannot start before its run fails (POD_START, default 60 s),
    or UserError when the configuration gives anything but a positive number of seconds."""
    seconds = config.get(POD_START, POD_START_DEFAULT)
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not 0 < seconds < math.inf:
        raise UserError(f"{POD_START} in {config_path!r} must be a positive number of seconds, got {seconds!r}")
    return float(seconds)


def image_name(config: dict, commit: str | None, state: dict | None = None) -> str:
    """Return the image a Kubernetes child runs: the configured repository, tagged with the commit whose
    code it holds, and for a working tree that differs from it, with the tree's state (git.state):
    the image is built from the tree, and a pod's run records the tree it ran."""
    if not commit:
        raise UserError(
            f"backend={KUBERNETES} runs the image built from a git commit, and this project has none: commit it, "
            "then build and push its image (README, Run on Kubernetes)"
        )
    dirty = (state or {}).get(names.TAG_DIRTY) == "true"
    return f"{config[KUBE_REPOSITORY]}:{commit[:12]}" + (f"-dirty-{state[names.TAG_STATE][:12]}" if dirty else "")


def docker_variant(project: dict, image: str) -> dict:
    """Return the project (MLproject, as read by YAML) run in `image` instead of an environment MLflow builds,
    as MLflow's kubernetes backend requires: the same entry points and parameters, each command behind
    UNQUOTE, which undoes the shell quoting MLflow puts on every word of a Job's command."""
    replaced = ("name", "entry_points", "conda_env", "python_env", "docker_env")
    return {
        "name": project["name"],
        "docker_env": {"image": image},
        **{key: value for key, value in project.items() if key not in replaced},
        "entry_points": {
            entry: {**spec, "command": f"{UNQUOTE} {spec['command']}"}
            for entry, spec in project["entry_points"].items()
        },
    }


def cpu_quota(cgroup: Path = CGROUP) -> float | None:
    """Return the CPUs this process' cgroup may use (a container's or pod's CPU limit), None without one.
    cgroup v2 writes `<quota> <period>` or `max <period>` in cpu.max; v1 a quota of -1 for none."""
    try:
        quota, period = (cgroup / "cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        quota = int((cgroup / "cpu" / "cpu.cfs_quota_us").read_text())
        period = int((cgroup / "cpu" / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return quota / period if quota > 0 and period > 0 else None


def usable_cores(cgroup: Path = CGROUP) -> int:
    """Return the cores a training here may keep busy: those the process may be scheduled on, capped by its
    cgroup's CPU limit (rounded down, at least one: a thread more than the limit allows only waits
    for its share). os.cpu_count() alone counts the node's cores inside a pod."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    quota = cpu_quota(cgroup)
    return cores if quota is None else max(1, min(cores, math.floor(quota)))
