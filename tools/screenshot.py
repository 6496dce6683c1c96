"""A screenshot of an experiment's page in MLflow's UI, as a new visitor sees it (headless Chromium).

Starts `mlflow ui` for a tracking store on a free port of 127.0.0.1, waits until it answers, opens
`#/experiments/<id>` in headless Chromium with a fresh profile, saves the PNG and stops the server
it started. Give it a copy or a throw-away store, not one a running sweep writes to.

    .venv/bin/python tools/screenshot.py --store sqlite:////tmp/demo/mlflow.db --experiment fabric_madness_small \\
        --out docs/experiment-runs.png --workflow machine_learning

`--workflow machine_learning` opens the page in the UI's "Model training" mode (the `workflowType`
query parameter); without it the page opens in the mode a first visit gets (MLflow 3.17: "GenAI").
Needs Chromium (Debian: apt-get install chromium).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

START_SECONDS = 180  # mlflow ui starts 4 workers; on a busy machine that takes a while


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def experiment_id(store: str, experiment: str) -> str:
    import mlflow

    found = mlflow.MlflowClient(tracking_uri=store).get_experiment_by_name(experiment)
    if found is None and not experiment.isdigit():
        sys.exit(f"error: no experiment named {experiment!r} in {store}")
    return found.experiment_id if found else experiment


def wait_until_up(url: str, server: subprocess.Popen) -> None:
    deadline = time.monotonic() + START_SECONDS
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: never through a proxy
    while time.monotonic() < deadline:
        if server.poll() is not None:
            sys.exit(f"error: mlflow ui exited with status {server.returncode}")
        try:
            with opener.open(url, timeout=5) as answer:
                if answer.status == 200:
                    return
        except OSError:
            pass
        time.sleep(1)
    sys.exit(f"error: mlflow ui did not answer at {url} within {START_SECONDS} s")


def screenshot(url: str, out: Path, size: str, budget_ms: int) -> None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        sys.exit("error: no chromium on PATH (Debian: apt-get install chromium)")
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="screenshot-profile-") as profile:
        command = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars"]
        command += [f"--user-data-dir={profile}", f"--window-size={size}", f"--virtual-time-budget={budget_ms}"]
        subprocess.run([*command, f"--screenshot={out.resolve()}", url], capture_output=True, check=True, timeout=300)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", required=True, help="backend store URI, e.g. sqlite:////tmp/demo/mlflow.db")
    parser.add_argument("--experiment", required=True, help="experiment name or id")
    parser.add_argument("--out", required=True, type=Path, help="the PNG to write")
    parser.add_argument(
        "--workflow",
        choices=("", "genai", "machine_learning"),
        default="",
        help="the UI's mode: genai, machine_learning or empty (what a first visit gets)",
    )
    parser.add_argument("--size", default="1400,900", help="window width,height")
    parser.add_argument("--budget_ms", type=int, default=15000, help="virtual time the page gets to render")
    args = parser.parse_args(argv)

    exp_id = experiment_id(args.store, args.experiment)
    port = free_port()
    command = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", args.store]
    command += ["--host", "127.0.0.1", "--port", str(port)]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_until_up(f"http://127.0.0.1:{port}/", server)
        query = f"?workflowType={args.workflow}" if args.workflow else ""
        url = f"http://127.0.0.1:{port}/#/experiments/{exp_id}{query}"
        screenshot(url, args.out, args.size, args.budget_ms)
        print(f"{url} -> {args.out} ({args.out.stat().st_size // 1024} KB)")
    finally:
        os.killpg(server.pid, signal.SIGTERM)  # the server and its workers: the group it started
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


if __name__ == "__main__":
    main()
