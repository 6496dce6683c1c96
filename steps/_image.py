"""The image a Kubernetes sweep's children run: built here from the project's Dockerfile (exactly
requirements.lock, then the code) when the Docker engine does not have it yet. MLflow's kubernetes
backend pushes it before each Job; the dependency layers come before the code's, so a rebuild after
a code change reuses them. And the project as that backend runs it: MLproject with a docker_env
naming the image."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import docker
import docker.errors
import mlflow
import yaml

from madness import git
from madness.backends import KUBERNETES, Backend, docker_variant, image_name
from madness.errors import UserError
from steps._coordination import remote_store
from steps._entry import PROJECT_ROOT, project_commit
from steps._failures import without_credentials


def with_image(backend: Backend) -> Backend:
    """Return the Kubernetes backend with the image its children run (this commit's, built when the
    engine lacks it); UserError in one line when it cannot be had."""
    image = image_name(backend.config, project_commit(), git.state(PROJECT_ROOT))
    ensure_image(image)
    return dataclasses.replace(backend, image=image)


def check_pods_reach_store() -> None:
    """Refuse in one line a tracking store on this machine: a pod tracks to this process's
    MLFLOW_TRACKING_URI, and a SQLite file or a folder here is not in the pod."""
    uri = mlflow.get_tracking_uri()
    if not remote_store(uri):
        raise UserError(
            f"backend={KUBERNETES} runs in pods that track to MLFLOW_TRACKING_URI, and {without_credentials(uri)} "
            "is a store on this machine, not in a pod: give a tracking server the pods can reach (make server; "
            "docs/kubernetes.md)"
        )


def ensure_image(image: str) -> None:
    """Build `image` from PROJECT_ROOT's Dockerfile unless the engine (DOCKER_HOST) already has it;
    UserError in one line when there is no engine or the build fails."""
    try:
        client = docker.from_env()
        client.images.get(image)
        return
    except docker.errors.ImageNotFound:
        pass
    except docker.errors.DockerException as err:
        said = str(err).strip().splitlines()[-1] if str(err).strip() else type(err).__name__
        raise UserError(f"no Docker engine to build the image {image} with (DOCKER_HOST): {said}") from None
    print(f"building {image} from Dockerfile and requirements.lock", flush=True)
    started = time.perf_counter()
    try:
        # The host's network: the engine may have no bridge, and the build installs from package indexes.
        client.images.build(path=str(PROJECT_ROOT), tag=image, network_mode="host", rm=True, forcerm=True)
    except docker.errors.BuildError as err:
        raise UserError(f"building the image {image} failed: {err.msg}") from None
    except docker.errors.APIError as err:
        raise UserError(f"building the image {image} failed: {err.explanation or err}") from None
    print(f"built {image} in {time.perf_counter() - started:.0f} s", flush=True)


def write_variant(folder: Path, image: str) -> Path:
    """Write into `folder` the project's MLproject with every entry point run in `image`
    (madness.backends.docker_variant) and return the folder: MLflow's kubernetes backend wants a
    docker_env, which in the project's own MLproject would make every local run need Docker."""
    project = yaml.safe_load((PROJECT_ROOT / "MLproject").read_text())
    (folder / "MLproject").write_text(yaml.safe_dump(docker_variant(project, image), sort_keys=False))
    return folder
