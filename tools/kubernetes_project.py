"""The whole sweep as one Kubernetes Job, through MLflow's own kubernetes backend: write the project
as that backend runs it, a folder (`.kubernetes/`, git-ignored) holding

- `MLproject`: the project's, with a docker_env naming this commit's image (built from the
  Dockerfile when the Docker engine lacks it) and each command behind steps._unquote, as the
  sweep's own Kubernetes children run (MLflow allows one environment per MLproject, and the
  project's declares conda_env);
- `kubernetes_config.json`: the backend configuration given, its Job template's path made absolute
  (MLflow reads a relative one from the folder `mlflow run` is started in).

With --run it then runs the `main` entry point as one Job, its ingest and pairs local inside the
pod, and waits for it, as the sweep runs and waits for its own Kubernetes children (through MLflow's
public `mlflow.projects.run`: steps._launcher.submit, wait_remote): a pod that never starts ends the run FAILED with
the reason, Ctrl-C or SIGTERM deletes the Job with its pod and ends the run KILLED, a launch that
fails ends the run FAILED, each in one line; the run is never left RUNNING.

    python -m tools.kubernetes_project .cluster/kubernetes_config.json --run -P models=small

MLflow's own `mlflow run .kubernetes --backend kubernetes ...` runs the written project as well,
without those guarantees. Write it again after each commit: the image and the variant are the commit's.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sys
from pathlib import Path

import mlflow
from mlflow.exceptions import MlflowException

from madness import names
from madness.backends import KUBERNETES, Backend, kubernetes_config
from madness.errors import UserError
from madness.names import Status
from steps import _lifecycle
from steps._entry import PROJECT_ROOT
from steps._image import check_pods_reach_store, with_image, write_variant
from steps._launcher import launch_failure, submit, wait_remote
from steps._runs import end_killed, end_run

FOLDER = PROJECT_ROOT / ".kubernetes"
CONFIG_FILE = "kubernetes_config.json"


def write_project(config_path: str, folder: Path) -> Backend:
    """Build this commit's image if the engine lacks it, write the variant and the configuration
    into `folder`, and return the backend that runs it; UserError in one line when either cannot be had."""
    backend = with_image(Backend(KUBERNETES, kubernetes_config(config_path)))
    folder.mkdir(parents=True, exist_ok=True)
    write_variant(folder, backend.image)
    (folder / CONFIG_FILE).write_text(json.dumps(backend.config, indent=2) + "\n")
    return backend


def run_one_job(backend: Backend, parameters: dict[str, str], experiment_name: str | None) -> tuple[str, Status, str]:
    """Run the `main` entry point as one Job on `backend`, as the sweep runs its children
    (steps._launcher.submit), wait for it, and return its run's id, how the run ended and why, having
    ended it if the pod did not (see the module's docstring); UserError when the Job could not start."""
    client = mlflow.MlflowClient()
    try:
        # None: where `mlflow run` would put it (MLFLOW_EXPERIMENT_NAME or _ID, else Default).
        exp_id = mlflow.set_experiment(experiment_name).experiment_id if experiment_name else None
    except MlflowException as err:  # a deleted experiment, a name MLflow refuses
        raise UserError(f"experiment {experiment_name!r}: {err.message.strip().splitlines()[0]}") from None
    run_name = f"sweep-job-{secrets.token_hex(4)}"  # finds the run MLflow made when the launch fails
    try:
        child = submit("main", parameters, exp_id, run_name, backend)
    except Exception as err:  # noqa: BLE001 - docker's and kubernetes' clients raise their own
        searched = [exp_id] if exp_id else [exp.experiment_id for exp in client.search_experiments()]
        for run in client.search_runs(searched, f"tags.`{names.TAG_RUN_NAME}` = '{run_name}'"):
            end_run(client, run.info.run_id, Status.FAILED, f"its Job could not start: {launch_failure(err)}")
        raise UserError(f"the sweep's Job could not start: {launch_failure(err)}") from None
    print(f"run {child.run_id} ({run_name}): the sweep as Job {child.name} in namespace {child.namespace}", flush=True)
    status, why = wait_remote(child, _lifecycle.stop, run_name)
    if status == Status.KILLED:
        return child.run_id, end_killed(client, child.run_id), _lifecycle.stop_reason()
    if status == Status.FAILED and not why:
        why = f"its pod's output says why (kubectl logs job/{child.name} -n {child.namespace})"
    return child.run_id, end_run(client, child.run_id, status, why), why


def parameter(word: str) -> tuple[str, str]:
    name, equals, value = word.partition("=")
    if not equals or not name:
        raise argparse.ArgumentTypeError(f"expected name=value, got {word!r}")
    return name, value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("backend_config", help="the kubernetes backend's configuration (JSON), as the sweep takes it")
    parser.add_argument("--dir", type=Path, default=FOLDER, help="where to write it (default .kubernetes)")
    parser.add_argument("--run", action="store_true", help="then run the sweep as one Job and wait for it")
    parser.add_argument("--experiment-name", help="the experiment of the sweep's run, as for mlflow run")
    parser.add_argument(
        "-P", dest="parameters", metavar="NAME=VALUE", type=parameter, action="append", default=[],
        help="a parameter of the main entry point, as for mlflow run",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if not args.run and (args.parameters or args.experiment_name):
        parser.error("-P and --experiment-name are for --run")
    try:
        if args.run:
            check_pods_reach_store()
        backend = write_project(args.backend_config, args.dir)
        if args.run:
            # From here Ctrl-C or SIGTERM deletes the Job with its pod once it is submitted; before,
            # it would stop the image's build, which the next command would start again.
            _lifecycle.handle_signals()
            run_id, status, why = run_one_job(backend, dict(args.parameters), args.experiment_name)
            if status == Status.FINISHED:
                print(f"the sweep's run {run_id} ended FINISHED", flush=True)
                return 0
            print(f"error: the sweep's run {run_id} ended {status}" + (f": {why}" if why else ""), file=sys.stderr)
            return 130 if status == Status.KILLED else 1
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    folder = os.path.relpath(args.dir)
    print(
        f"{folder}: the project in {backend.image}; the sweep as one Job:\n"
        f"  python -m tools.kubernetes_project {args.backend_config} --run -P models=... -P lrs=...\n"
        f"or with MLflow's own command (a pod that never starts keeps it waiting):\n"
        f"  mlflow run {folder} --backend kubernetes --backend-config {folder}/{CONFIG_FILE} "
        "--env-manager local -P models=... -P lrs=..."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
