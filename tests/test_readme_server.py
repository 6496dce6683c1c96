"""The README's by-hand team server, run as written: PostgreSQL and `mlflow server` started by its
commands (not by tools/teamserver.py), then a sweep, its cached re-invocation and a reproduce."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
import urllib.request

import pytest

from conftest import ROOT, subprocess_env
from servers import Team, ok, reachable_folder, require_postgres
from stores import snapshot
from tools.teamserver import free_port

pytestmark = pytest.mark.slow

README = (ROOT / "README.md").read_text()


def by_hand_block() -> list[str]:
    block = re.search(r"By hand, `make server` amounts to:\n\n```bash\n(.*?)```", README, flags=re.S).group(1)
    return block.strip().splitlines()


@pytest.fixture(scope="module")
def readme_server(tmp_path_factory):
    require_postgres()
    lines = by_hand_block()
    assert lines[0].startswith("DIR=") and lines[-1].startswith("mlflow server ")
    with reachable_folder() as folder:
        port = free_port()
        setup = [f"DIR={folder}/server PGPORT={free_port()} PORT={port}", *lines[1:]]
        env = subprocess_env()
        # The setup lines run in one shell; the last one (the server, in the foreground) is started
        # in the background from the same variables, as a user would in a second terminal.
        script = "set -e\n" + "\n".join(setup[:-1]) + f"\nexec {setup[-1]} > {folder}/mlflow.log 2>&1\n"
        server = subprocess.Popen(["bash", "-c", script], cwd=folder, env=env, start_new_session=True)
        try:
            wait_healthy(f"http://127.0.0.1:{port}", server, folder)
            yield Team(f"http://127.0.0.1:{port}", folder, snapshot(tmp_path_factory.mktemp("readme") / "project"))
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=60)
            stop = "\n".join(setup[:3]) + '\n$RUN $BIN/pg_ctl -D $DIR/postgres/data -m fast -w stop\n'
            subprocess.run(["bash", "-c", stop], cwd=folder, env=env, check=False)


def wait_healthy(uri: str, process: subprocess.Popen, folder) -> None:
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"the README's server commands exited with {process.returncode}: {(folder / 'mlflow.log').read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"{uri}/health", timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    pytest.fail(f"mlflow server never answered on {uri}")


SWEEP = ["-P", "models=small", "-P", "lrs=0.01,0.1", "-P", "epochs=2", "-P", "jobs=2", "-P", "prefix=readme", "--experiment-name", "readme"]


@pytest.fixture(scope="module")
def first(readme_server):
    result = readme_server.mlflow_run(*SWEEP)
    ok(result)
    return result


def test_a_sweep_finishes_on_the_readmes_server(readme_server, first):
    assert sorted(r.info.status for r in readme_server.runs("readme_small")) == ["FINISHED", "FINISHED"]


def test_its_re_invocation_trains_nothing(readme_server, first):
    again = readme_server.mlflow_run(*SWEEP)
    ok(again)
    assert "2 pairs, 2 reused, 0 to train" in again.stdout


def test_a_train_run_reproduces_bit_for_bit(readme_server, first):
    run = readme_server.runs("readme_small")[0]
    result = readme_server.mlflow_run("-e", "reproduce", "-P", f"run_id={run.info.run_id}")
    ok(result)
    assert f"matches run {run.info.run_id} on" in result.stdout and "bit for bit" in result.stdout
