"""The README's serving commands, run as written against a real `mlflow models serve`: a model
registered as fabric_madness@champion, a request built from real feature rows, a curl that gets its
predictions, which are the loaded model's own; the server says nothing of CUDA."""

from __future__ import annotations

import json
import re
import shlex
import socket
import subprocess
import time
import urllib.request

import mlflow
import pandas as pd
import pytest
from test_readme import bash_lines

from conftest import ROOT, subprocess_env
from madness import names
from steps.report import new_version
from stores import synthetic_features, temp_store

SECTION = re.search(r"### Serve the best model\n(.*?)\n##", (ROOT / "README.md").read_text(), flags=re.S).group(1)
SERVE, REQUEST, CURL = bash_lines(SECTION)
README_PORT = "5001"


def free_port() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return str(sock.getsockname()[1])


@pytest.fixture(scope="module")
def champion(tmp_path_factory):
    """A store whose fabric_madness@champion is a small network trained on the synthetic league's features."""
    from steps.train import main as train

    folder = tmp_path_factory.mktemp("serving")
    with temp_store(folder) as (uri, _):
        features = synthetic_features(folder)
        train(["--model", "small", "--lr", "0.01", "--epochs", "2", "--features_uri", str(features)])
        client = mlflow.MlflowClient()
        (run,) = client.search_runs(
            [e.experiment_id for e in client.search_experiments()], "tags.entry_point = 'train'"
        )
        client.create_registered_model("fabric_madness")
        version = new_version(client, "fabric_madness", run.info.run_id)
        client.set_registered_model_alias("fabric_madness", "champion", version.version)
        yield uri, features, folder


@pytest.mark.slow
def test_the_readme_serves_the_champion_and_curl_gets_the_models_predictions(champion):
    uri, features, folder = champion
    assert SERVE.endswith(" &") and README_PORT in SERVE and README_PORT in CURL
    port = free_port()
    env = subprocess_env({"MLFLOW_TRACKING_URI": uri})
    server = subprocess.Popen(
        shlex.split(SERVE.removesuffix(" &").replace(README_PORT, port)),
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        request_file = folder / "request.json"
        made = subprocess.run(
            REQUEST.replace("request.json", str(request_file)), shell=True, cwd=ROOT, env=env, check=False
        )
        assert made.returncode == 0
        deadline = time.monotonic() + 300
        while True:
            assert server.poll() is None, server.stdout.read()
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=5) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                assert time.monotonic() < deadline, "the server did not answer /ping in 300 s"
                time.sleep(1)
        asked = subprocess.run(
            CURL.replace(README_PORT, port).replace("request.json", str(request_file)),
            shell=True,
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
    finally:
        server.terminate()
        said, _ = server.communicate(timeout=60)
    predictions = json.loads(asked.stdout)["predictions"]
    body = json.loads(request_file.read_text())["dataframe_split"]
    rows = pd.DataFrame(body["data"], columns=body["columns"])
    games = pd.read_csv(features / names.GAMES_FILE)
    assert rows.equals(games[games[names.SPLIT] == names.TEST].head(3)[body["columns"]].reset_index(drop=True))
    expected = mlflow.pyfunc.load_model("models:/fabric_madness@champion").predict(rows)
    assert predictions == [float(p) for p in expected]
    assert "cuda" not in said.lower(), said
