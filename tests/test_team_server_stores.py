"""Artifact stores behind a team server: S3 (moto_server, a real S3 endpoint over HTTP), proxied by
the server or written by the clients themselves; and who may write (MLflow's basic-auth app)."""

from __future__ import annotations

import base64
import json
import secrets
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import mlflow
import pytest

from madness import names
from servers import bucket_keys, last_line, moto_s3, ok, team_of, team_server

pytestmark = pytest.mark.slow

BUCKET = "madness"
SWEEP = ["-P", "models=small", "-P", "lrs=0.01,0.1", "-P", "epochs=1", "-P", "jobs=2"]


@pytest.fixture(scope="module")
def s3():
    with moto_s3(BUCKET) as env:
        yield env


def sweep_on(server, client_env: dict, s3: dict, tmp_path_factory, prefix: str) -> SimpleNamespace:
    team = team_of(server, tmp_path_factory.mktemp(prefix), env=client_env)
    ok(team.mlflow_run(*SWEEP, "-P", f"prefix={prefix}", "--experiment-name", prefix))
    children = team.runs(f"{prefix}_small")
    assert [r.info.status for r in children] == ["FINISHED", "FINISHED"]
    (ingest,) = team.entry(prefix, "ingest")
    (sweep,) = team.entry(prefix, "main")
    return SimpleNamespace(team=team, children=children, ingest=ingest, sweep=sweep, keys=bucket_keys(s3, BUCKET))


@pytest.fixture(scope="module")
def proxied(s3, tmp_path_factory):
    """The server proxies artifacts into the bucket: clients need no S3 credentials."""
    with team_server(artifacts_destination=f"s3://{BUCKET}/proxied", extra_env=s3) as server:
        yield sweep_on(server, {}, s3, tmp_path_factory, "s3p")


@pytest.fixture(scope="module")
def direct(s3, tmp_path_factory):
    """The server hands out s3:// locations: clients write to the bucket themselves."""
    with team_server(serve_artifacts=False, default_artifact_root=f"s3://{BUCKET}/direct", extra_env=s3) as server:
        yield sweep_on(server, s3, s3, tmp_path_factory, "s3d")


@pytest.mark.parametrize(("store", "folder"), [("proxied", "proxied/"), ("direct", "direct/")])
def test_the_sweeps_models_plots_features_and_report_are_objects_in_the_bucket(store, folder, request):
    done = request.getfixturevalue(store)
    keys = [k for k in done.keys if k.startswith(folder)]
    for run in done.children:
        assert any(k.endswith(f"{run.info.run_id}/artifacts/{names.LOSS_PLOT}") for k in keys)
        assert any(k.endswith(f"{run.info.run_id}/artifacts/{names.FEATURES_DIR}/{names.MANIFEST_FILE}") for k in keys)
    assert len([k for k in keys if "/models/" in k and k.endswith("/artifacts/MLmodel")]) == 2
    assert any(k.endswith(f"{done.ingest.info.run_id}/artifacts/{names.FEATURES_DIR}/{names.GAMES_FILE}") for k in keys)
    assert any(k.endswith(f"{done.sweep.info.run_id}/artifacts/{names.REPORT_DIR}/{names.BRIER_CHART}") for k in keys)


def test_proxied_runs_keep_mlflow_artifacts_uris_and_http_dataset_sources(proxied):
    for run in proxied.children:
        assert run.info.artifact_uri.startswith("mlflow-artifacts:")
        assert {i.dataset.source_type for i in run.inputs.dataset_inputs} == {"http"}


def test_direct_runs_log_s3_dataset_sources_that_download_the_features(direct, s3, monkeypatch):
    for name, value in s3.items():
        monkeypatch.setenv(name, value)
    games = direct.team.download(
        f"runs:/{direct.ingest.info.run_id}/{names.FEATURES_DIR}/{names.GAMES_FILE}"
    ).read_bytes()
    for run in direct.children:
        assert run.info.artifact_uri.startswith(f"s3://{BUCKET}/direct/")
        for dataset_input in run.inputs.dataset_inputs:
            assert dataset_input.dataset.source_type == "s3"
            assert (
                json.loads(dataset_input.dataset.source)["uri"]
                == f"{direct.ingest.info.artifact_uri}/{names.FEATURES_DIR}/{names.GAMES_FILE}"
            )
            assert Path(mlflow.data.get_source(dataset_input.dataset).load()).read_bytes() == games


# --- who may write: basic auth ---

PASSWORD = secrets.token_urlsafe(16)  # alice's; it must show up nowhere


@pytest.fixture(scope="module")
def auth_server():
    with team_server(auth=True) as server:
        request = urllib.request.Request(
            f"{server.tracking_uri}/api/2.0/mlflow/users/create",
            method="POST",
            data=json.dumps({"username": "alice", "password": PASSWORD}).encode(),
            headers={
                "Content-Type": "application/json",
                "Authorization": "Basic " + base64.b64encode(f"admin:{server.admin_password}".encode()).decode(),
            },
        )
        urllib.request.urlopen(request, timeout=30)
        yield server


@pytest.fixture(scope="module")
def alice(auth_server, tmp_path_factory):
    """Alice's commands, and this process's client, carry her credentials."""
    credentials = {"MLFLOW_TRACKING_USERNAME": "alice", "MLFLOW_TRACKING_PASSWORD": PASSWORD}
    with pytest.MonkeyPatch.context() as mp:
        for name, value in credentials.items():
            mp.setenv(name, value)
        yield team_of(auth_server, tmp_path_factory.mktemp("alice"), env=credentials)


def test_a_client_without_credentials_is_refused_in_one_line(auth_server, tmp_path):
    team = team_of(auth_server, tmp_path, env={"MLFLOW_TRACKING_USERNAME": "", "MLFLOW_TRACKING_PASSWORD": ""})
    result = team.step("steps.main", "--models", "small", "--lrs", "0.01", "--epochs", "1", "--prefix", "anon")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert last_line(result.stderr) == (
        f"error: the tracking server {auth_server.tracking_uri} refused the request: "
        "not authenticated; set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD"
    )


@pytest.fixture(scope="module")
def alices_sweep(alice):
    result = alice.mlflow_run(
        *SWEEP, "-P", "prefix=auth", "-P", "register=true", "--experiment-name", "auth", "--run-name", "sweep"
    )
    ok(result)
    return result


def test_with_credentials_the_sweep_and_every_child_run_work(alice, alices_sweep):
    runs = alice.runs("auth") + alice.runs("auth_small")
    assert sorted((r.info.run_name, r.info.status) for r in runs) == [
        ("ingest", "FINISHED"),
        ("small_0.01_epochs1", "FINISHED"),
        ("small_0.1_epochs1", "FINISHED"),
        ("sweep", "FINISHED"),
    ]
    assert alice.client.get_model_version_by_alias("auth_small", "champion")


def test_the_password_appears_in_no_param_tag_artifact_or_output(alice, alices_sweep, tmp_path):
    assert PASSWORD not in alices_sweep.stdout + alices_sweep.stderr
    runs = alice.runs("auth") + alice.runs("auth_small")
    for run in runs:
        for value in [*run.data.params.values(), *run.data.tags.values()]:
            assert PASSWORD not in value, run.info.run_name
        assert_not_in_files(alice.download(f"runs:/{run.info.run_id}/"))
    experiments = [alice.client.get_experiment_by_name(name) for name in ("auth", "auth_small")]
    for experiment in experiments:
        assert all(PASSWORD not in v for v in experiment.tags.values())
    for run in alice.runs("auth_small"):
        assert_not_in_files(alice.download(f"runs:/{run.info.run_id}/{names.MODEL_DIR}"))


def assert_not_in_files(folder) -> None:
    for path in folder.rglob("*"):
        if path.is_file():
            assert PASSWORD.encode() not in path.read_bytes(), path
