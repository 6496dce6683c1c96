"""The whole sweep as one Kubernetes Job, through MLflow's own kubernetes backend: write the project
as that backend runs it, a folder (`.kubernetes/`, git-ignored) holding

- `MLproject`: the project's, with a docker_env naming this commit's image (built from the
  Dockerfile when the Docker engine lacks it) and each command behind steps._unquote, as the
  sweep's own Kubernetes children run (MLflow allows one environment per MLproject, and the
  project's declares conda_env);
- `kubernetes_config.json`: the backend configuration given, its Job template's path made absolute
  (MLflow reads a relative one from the folder `mlflow run` is started in).

Then the `main` entry point runs in one pod, its ingest and pairs local inside it:

    python -m tools.kubernetes_project .cluster/kubernetes_config.json
    mlflow run .kubernetes --backend kubernetes --backend-config .kubernetes/kubernetes_config.json --env-manager local -P models=small

Write it again after each commit: the image and the variant are the commit's.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from madness import git
from madness.backends import image_name, kubernetes_config
from madness.errors import UserError
from steps._entry import PROJECT_ROOT
from steps._image import ensure_image, write_variant

FOLDER = PROJECT_ROOT / ".kubernetes"


def write_project(config_path: str, folder: Path) -> str:
    """Build this commit's image if the engine lacks it, write the variant and the configuration
    into `folder`, and return the image; UserError in one line when either cannot be had."""
    config = kubernetes_config(config_path)
    try:
        commit = git.head(PROJECT_ROOT)
    except (OSError, subprocess.CalledProcessError):
        commit = None
    image = image_name(config, commit, git.state(PROJECT_ROOT))
    ensure_image(image)
    folder.mkdir(parents=True, exist_ok=True)
    write_variant(folder, image)
    (folder / "kubernetes_config.json").write_text(json.dumps(config, indent=2) + "\n")
    return image


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("backend_config", help="the kubernetes backend's configuration (JSON), as the sweep takes it")
    parser.add_argument("--dir", type=Path, default=FOLDER, help="where to write it (default .kubernetes)")
    args = parser.parse_args(argv)
    try:
        image = write_project(args.backend_config, args.dir)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    folder = os.path.relpath(args.dir)
    print(
        f"{folder}: the project in {image}; the sweep as one Job:\n"
        f"  mlflow run {folder} --backend kubernetes --backend-config {folder}/kubernetes_config.json "
        "--env-manager local -P models=... -P lrs=..."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
