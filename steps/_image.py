"""The image a Kubernetes sweep's children run: built here from the project's Dockerfile (exactly
requirements.lock, then the code) when the Docker engine does not have it yet. MLflow's kubernetes
backend pushes it before each Job; the dependency layers come before the code's, so a rebuild after
a code change reuses them. And the project as that backend runs it: MLproject with a docker_env
naming the image."""

from __future__ import annotations

import time
from pathlib import Path

import docker
import docker.errors
import yaml

from madness.backends import docker_variant
from madness.errors import UserError
from steps._entry import PROJECT_ROOT


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
