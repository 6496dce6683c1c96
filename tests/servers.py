"""Real servers for the team-server tests: PostgreSQL + `mlflow server` (tools/teamserver.py), an S3
endpoint (moto_server), and a project snapshot whose steps and sweeps run against them.

Every server listens on a free loopback port and is stopped and removed when its block ends. Where
PostgreSQL's server programs are missing the tests skip with the reason, except under CI=true,
where that is a failure: CI must install them.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import mlflow
import pytest

from conftest import ROOT, subprocess_env
from madness import names
from stores import last_line, ok, snapshot  # noqa: F401 (re-exported for the server tests)
from tools.teamserver import TeamServer, free_port, postgres_bindir

MLFLOW = str(Path(sys.executable).parent / "mlflow")
S3_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
TIMEOUT = 1200
INHERITED_CONTEXT = ("MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME")


def require_postgres() -> None:
    if postgres_bindir() is not None:
        return
    reason = "PostgreSQL's server programs (initdb, pg_ctl) are not installed"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason}; CI must install them (apt-get install postgresql-15)")
    pytest.skip(reason)


@contextmanager
def reachable_folder():
    """A temporary folder the postgres user can enter (pytest's tmp_path is private to root)."""
    folder = Path(tempfile.mkdtemp(prefix="madness-server-"))
    folder.chmod(0o755)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@contextmanager
def team_server(**options):
    """PostgreSQL and `mlflow server` on free ports; always stopped and removed."""
    require_postgres()
    with reachable_folder() as folder:
        server = TeamServer(folder, port=free_port(), workers=1, **options)
        with server:
            yield server


@dataclass
class ReadmeServer:
    """A server started by the by-hand commands of docs/team-server.md, not by tools/teamserver.py."""

    tracking_uri: str
    folder: Path
    postgres_port: int

    @property
    def artifacts(self) -> Path:
        return self.folder / "artifacts"

    def store_uri(self) -> str:
        password = (self.folder / "postgres" / "password").read_text().strip()
        return f"postgresql://mlflow:{password}@127.0.0.1:{self.postgres_port}/mlflow"


def readme_by_hand_block() -> list[str]:
    page = (ROOT / "docs" / "team-server.md").read_text()
    block = re.search(r"By hand, `make server` amounts to:\n\n```bash\n(.*?)```", page, flags=re.S).group(1)
    lines = block.strip().splitlines()
    assert lines[0].startswith("DIR=") and lines[-1].startswith("mlflow server "), (
        "the by-hand block of docs/team-server.md changed shape"
    )
    return lines


@contextmanager
def readme_server():
    """Run the by-hand block of docs/team-server.md as written, its variables set to a temporary folder and free
    ports: the setup lines in one shell, then the last line (the server, in the foreground) in the
    background, as a user would in a second terminal. Stopped and removed afterwards."""
    require_postgres()
    lines = readme_by_hand_block()
    with reachable_folder() as folder:
        server = ReadmeServer(f"http://127.0.0.1:{free_port()}", folder / "server", free_port())
        setup = [
            f"DIR={server.folder} PGPORT={server.postgres_port} PORT={server.tracking_uri.rsplit(':', 1)[1]}",
            *lines[1:],
        ]
        env = subprocess_env()
        script = "set -e\n" + "\n".join(setup[:-1]) + f"\nexec {setup[-1]} > {folder}/mlflow.log 2>&1\n"
        process = subprocess.Popen(["bash", "-c", script], cwd=folder, env=env, start_new_session=True)
        try:
            wait_healthy(server.tracking_uri, process, folder / "mlflow.log")
            yield server
        finally:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=60)
            stop = "\n".join(setup[:3]) + "\n$RUN $BIN/pg_ctl -D $DIR/postgres/data -m fast -w stop\n"
            subprocess.run(["bash", "-c", stop], cwd=folder, env=env, check=False, capture_output=True)


def wait_healthy(uri: str, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"the by-hand server commands exited with {process.returncode}: {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"{uri}/health", timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    pytest.fail(f"mlflow server never answered on {uri}")


@contextmanager
def moto_s3(bucket: str):
    """A real S3 endpoint over HTTP (moto_server) with one bucket; yields the environment that reaches it."""
    import boto3

    port = free_port()
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=2)
                break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError(f"moto_server did not start on {endpoint}") from None
                time.sleep(0.2)
        env = {**S3_ENV, "MLFLOW_S3_ENDPOINT_URL": endpoint}
        boto3.client("s3", endpoint_url=endpoint, **s3_credentials()).create_bucket(Bucket=bucket)
        yield env
    finally:
        process.terminate()
        process.wait(timeout=30)


def s3_credentials() -> dict:
    return {
        "aws_access_key_id": S3_ENV["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": S3_ENV["AWS_SECRET_ACCESS_KEY"],
        "region_name": S3_ENV["AWS_DEFAULT_REGION"],
    }


def bucket_keys(env: dict, bucket: str, prefix: str = "") -> list[str]:
    import boto3

    s3 = boto3.client("s3", endpoint_url=env["MLFLOW_S3_ENDPOINT_URL"], **s3_credentials())
    keys = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys += [item["Key"] for item in page.get("Contents", [])]
    return keys


@dataclass
class Team:
    """A project snapshot whose commands run against one tracking server."""

    uri: str
    folder: Path  # the working folder of every command
    project: Path
    env: dict = field(default_factory=dict)  # e.g. credentials, S3 endpoint

    @property
    def client(self) -> mlflow.MlflowClient:
        return mlflow.MlflowClient(tracking_uri=self.uri)

    def environment(self, extra: dict | None) -> dict:
        """A user's shell: this server, the snapshot on PYTHONPATH, and no run or experiment that an
        earlier test left active in this process (MLflow's set_experiment exports one)."""
        env = subprocess_env(
            {"MLFLOW_TRACKING_URI": self.uri, "PYTHONPATH": str(self.project), **self.env, **(extra or {})}
        )
        for name in INHERITED_CONTEXT:
            env.pop(name, None)
        return env

    def mlflow_run(self, *args: str, env: dict | None = None, timeout: int = TIMEOUT):
        """`mlflow run <snapshot> ...`, as a user types it."""
        return subprocess.run(
            [MLFLOW, "run", str(self.project), "--env-manager", "local", *args],
            cwd=self.folder,
            env=self.environment(env),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def step(self, module: str, *args: str, env: dict | None = None, timeout: int = TIMEOUT):
        """`python -m steps.<module> ...` (the sweep opens its own run)."""
        return subprocess.run(
            [sys.executable, "-m", module, *args],
            cwd=self.folder,
            env=self.environment(env),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def popen(self, module: str, *args: str, env: dict | None = None) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-m", module, *args],
            cwd=self.folder,
            env=self.environment(env),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def runs(self, experiment: str, filter_string: str = "") -> list:
        exp = self.client.get_experiment_by_name(experiment)
        return (
            []
            if exp is None
            else self.client.search_runs([exp.experiment_id], filter_string, order_by=["attributes.start_time ASC"])
        )

    def all_runs(self) -> list:
        ids = [e.experiment_id for e in self.client.search_experiments()]
        return self.client.search_runs(ids, max_results=5000)

    def running(self) -> list[str]:
        return [f"{r.info.run_name} ({r.info.run_id})" for r in self.all_runs() if r.info.status == "RUNNING"]

    def by_name(self, experiment: str) -> dict[str, list]:
        """Runs by their pair's name, <model>_<lr> (a run's own name adds its non-default settings)."""
        named: dict[str, list] = {}
        for run in self.runs(experiment):
            named.setdefault(f"{run.data.params['model']}_{run.data.params['lr']}", []).append(run)
        return named

    def entry(self, experiment: str, entry_point: str) -> list:
        return self.runs(experiment, f"tags.{names.TAG_ENTRY_POINT} = '{entry_point}'")

    def download(self, artifact_uri: str) -> Path:
        # MLflow finds a run's logged model through the global tracking URI, whatever tracking_uri says.
        previous = mlflow.get_tracking_uri()
        mlflow.set_tracking_uri(self.uri)
        try:
            return Path(
                mlflow.artifacts.download_artifacts(
                    artifact_uri=artifact_uri, dst_path=tempfile.mkdtemp(dir=self.folder)
                )
            )
        finally:
            mlflow.set_tracking_uri(previous)


def team_of(server: TeamServer, folder: Path, env: dict | None = None) -> Team:
    folder.mkdir(parents=True, exist_ok=True)
    return Team(server.tracking_uri, folder, snapshot(folder / "project"), env or {})
