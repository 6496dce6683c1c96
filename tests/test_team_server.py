"""Every entry point against a team server: PostgreSQL as the backend store, `mlflow server` proxying
the artifacts, each command a real `mlflow run` (or step) subprocess over HTTP.

The server is started by the by-hand commands of docs/team-server.md as written (tests/servers.py), not by the
project's own tools/teamserver.py: a sweep, its cached re-invocation and a reproduce succeed on a
server the project did not start. One server serves the module; each test group has its own prefix.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pandas as pd
import psycopg
import pytest

from madness import names
from servers import ok, readme_server

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server():
    with readme_server() as running:
        yield running


GRID = ["-P", "models=small,medium", "-P", "lrs=0.01,0.1", "-P", "epochs=2"]
PAIRS = {"small_0.01", "small_0.1", "medium_0.01", "medium_0.1"}


@pytest.fixture(scope="module")
def sweep(team):
    result = team.mlflow_run(
        *GRID, "-P", "jobs=2", "-P", "prefix=srv", "--experiment-name", "srv", "--run-name", "sweep"
    )
    ok(result)
    (run,) = team.entry("srv", "main")
    # by pair, <model>_<lr>: each run's own name adds its non-default settings (here _epochs2)
    children = {
        f"{r.data.params['model']}_{r.data.params['lr']}": r
        for model in ("small", "medium")
        for r in team.runs(f"srv_{model}")
    }
    return run, children, result


def test_a_sweep_over_http_finishes_every_pair_with_two_jobs(team, sweep):
    run, children, result = sweep
    assert run.info.status == "FINISHED"
    assert {name: r.info.status for name, r in children.items()} == {name: "FINISHED" for name in PAIRS}
    assert "running: small_0.01, small_0.1;" in result.stdout  # two at once
    (ingest,) = team.entry("srv", "ingest")
    assert ingest.info.status == "FINISHED"
    assert team.running() == []


def test_the_runs_are_stored_in_postgresql(server, sweep):
    _, children, _ = sweep
    with psycopg.connect(server.store_uri()) as db:
        stored = {row[0] for row in db.execute("SELECT run_uuid FROM runs WHERE status = 'FINISHED'")}
    assert {r.info.run_id for r in children.values()} <= stored


def test_artifacts_go_through_the_server_into_its_destination(server, sweep):
    _, children, _ = sweep
    run = children["small_0.01"]
    assert run.info.artifact_uri.startswith("mlflow-artifacts:")
    files = {p.relative_to(server.artifacts).as_posix() for p in server.artifacts.rglob("*") if p.is_file()}
    experiment = run.info.experiment_id
    assert f"{experiment}/{run.info.run_id}/artifacts/{names.LOSS_PLOT}" in files
    assert any(f.startswith(f"{experiment}/models/") and f.endswith("/artifacts/MLmodel") for f in files)


def test_each_train_run_logs_datasets_whose_source_downloads_the_features(team, sweep):
    import mlflow

    _, children, _ = sweep
    (ingest,) = team.entry("srv", "ingest")
    games = team.download(f"runs:/{ingest.info.run_id}/{names.FEATURES_DIR}/{names.GAMES_FILE}").read_bytes()
    for run in children.values():
        inputs = run.inputs.dataset_inputs
        assert sorted(i.dataset.name for i in inputs) == ["tournament_test", "tournament_train", "tournament_val"]
        for dataset_input in inputs:
            assert dataset_input.dataset.source_type == "http"
            source = mlflow.data.get_source(dataset_input.dataset)
            assert source.url.startswith(f"{team.uri}/api/2.0/mlflow-artifacts/artifacts/")
            assert Path(source.load()).read_bytes() == games


def test_a_second_invocation_trains_nothing(team, sweep):
    _, children, _ = sweep
    result = team.mlflow_run(*GRID, "-P", "jobs=2", "-P", "prefix=srv", "--experiment-name", "srv")
    ok(result)
    assert "4 pairs, 4 reused, 0 to train" in result.stdout
    assert {r.info.run_id for model in ("small", "medium") for r in team.runs(f"srv_{model}")} == {
        r.info.run_id for r in children.values()
    }
    assert len(team.entry("srv", "ingest")) == 1


@pytest.fixture(scope="module")
def registered(team, sweep):
    run, _, _ = sweep
    result = team.mlflow_run(
        "-e",
        "report",
        "-P",
        f"sweep_run_id={run.info.run_id}",
        "-P",
        "register=true",
        "-P",
        "filter=metrics.brier < 0.3",
    )
    ok(result)
    return result


def test_report_filters_the_runs_by_mlflows_search_over_http(team, sweep, registered):
    run, children, _ = sweep
    best = json.loads(team.download(f"runs:/{run.info.run_id}/{names.REPORT_DIR}/{names.BEST_FILE}").read_text())
    assert best["filter"] == "metrics.brier < 0.3"
    assert set(best["passing"]) == {r.info.run_id for r in children.values() if r.data.metrics[names.BRIER] < 0.3}


def test_report_registers_the_runs_that_pass_the_filter_and_aliases_the_best_champion(team, sweep, registered):
    _, children, _ = sweep
    passing = [r for r in children.values() if r.data.metrics[names.BRIER] < 0.3]
    for model in ("small", "medium"):
        runs = [r for r in passing if r.data.params["model"] == model]
        versions = team.client.search_model_versions(f"name = 'srv_{model}'")
        assert sorted(v.run_id for v in versions) == sorted(r.info.run_id for r in runs)
        champion = team.client.get_model_version_by_alias(f"srv_{model}", "champion")
        assert champion.run_id == min(runs, key=lambda r: r.data.metrics[names.BRIER]).info.run_id
    best = min(passing, key=lambda r: r.data.metrics[names.BRIER])
    assert team.client.get_model_version_by_alias("srv", "champion").run_id == best.info.run_id


def test_evaluate_on_the_champion_gives_the_brier_its_train_run_logged(team, sweep, registered):
    result = team.mlflow_run("-e", "evaluate", "-P", "model_uri=models:/srv_medium@champion")
    ok(result)
    (evaluated,) = team.runs("Default", f"tags.{names.TAG_ENTRY_POINT} = 'evaluate'")
    trained = team.client.get_run(evaluated.data.tags[names.TAG_EVALUATED])
    assert evaluated.info.status == "FINISHED"
    # Different processes, different thread counts (the sweep gave each child one): one Brier per model.
    assert evaluated.data.metrics[names.BRIER] == trained.data.metrics[names.BRIER]


def test_predict_on_the_champion_writes_a_kaggle_submission(team, registered):
    output = team.folder / "submission.csv"
    result = team.mlflow_run("-e", "predict", "-P", "model_uri=models:/srv_small@champion", "-P", f"output={output}")
    ok(result)
    submission = pd.read_csv(output)
    assert list(submission.columns) == [names.SUBMISSION_ID, names.SUBMISSION_PRED] and len(submission) > 100
    (run,) = team.runs("Default", f"tags.{names.TAG_ENTRY_POINT} = 'predict'")
    assert run.info.status == "FINISHED"
    assert pd.read_csv(team.download(f"runs:/{run.info.run_id}/{names.SUBMISSION_FILE}")).equals(submission)


def test_reproduce_reruns_a_train_run_bit_for_bit(team, sweep):
    _, children, _ = sweep
    original = children["medium_0.01"]
    result = team.mlflow_run("-e", "reproduce", "-P", f"run_id={original.info.run_id}")
    ok(result)
    assert f"reproduced: rerun {rerun_id(team, original)} matches run {original.info.run_id} on " in result.stdout
    assert "bit for bit" in result.stdout
    rerun = team.client.get_run(rerun_id(team, original))
    assert rerun.info.status == "FINISHED" and rerun.data.metrics[names.BRIER] == original.data.metrics[names.BRIER]


def rerun_id(team, original) -> str:
    (rerun,) = team.runs(
        "srv_medium",
        f"tags.{names.TAG_REPRODUCES} = '{original.info.run_id}' and tags.{names.TAG_ENTRY_POINT} = 'train'",
    )
    return rerun.info.run_id


def test_train_builds_its_own_features_over_http(team):
    result = team.mlflow_run(
        "-e", "train", "-P", "model=small", "-P", "lr=0.01", "-P", "epochs=1", "--experiment-name", "own"
    )
    ok(result)
    (run,) = team.runs("own")
    assert run.info.status == "FINISHED" and 0 < run.data.metrics[names.BRIER] < 1
    assert {i.dataset.name for i in run.inputs.dataset_inputs} == {
        "tournament_train",
        "tournament_val",
        "tournament_test",
    }


def test_a_failed_pair_fails_alone_and_is_retried_alone_with_one_job(team):
    # lr 1e38 passes every check before the sweep and diverges in its pair (float32 overflows).
    args = [
        "-P",
        "models=small",
        "-P",
        "lrs=0.01,1e38",
        "-P",
        "epochs=1",
        "-P",
        "prefix=srvf",
        "--experiment-name",
        "srvf",
    ]
    first = team.mlflow_run(*args)
    assert first.returncode != 0
    assert "error: 1 of 2 pairs failed: small_1e+38; run the sweep again to retry only those" in first.stderr
    again = team.mlflow_run(*args)
    assert again.returncode != 0
    assert "2 pairs, 1 reused, 1 to train" in again.stdout
    runs = team.by_name("srvf_small")
    assert [r.info.status for r in runs["small_0.01"]] == ["FINISHED"]
    assert [r.info.status for r in runs["small_1e+38"]] == ["FAILED", "FAILED"]


# --- two people, one sweep ---


@pytest.fixture(scope="module")
def together(team):
    """The same sweep started twice at once (jobs=1 each), registering at the end."""
    args = ["--models", "small,medium", "--lrs", "0.01,0.1", "--epochs", "2", "--prefix", "duo", "--register", "true"]
    processes = [team.popen("steps.main", *args) for _ in range(2)]
    outputs = [p.communicate(timeout=1200) for p in processes]
    return [
        subprocess.CompletedProcess(p.args, p.returncode, out, err)
        for p, (out, err) in zip(processes, outputs, strict=True)
    ]


def test_two_identical_sweeps_started_together_both_succeed(team, together):
    for result in together:
        ok(result)
    assert team.running() == []


def test_two_identical_sweeps_train_each_pair_and_the_ingest_once(team, together):
    runs = {**team.by_name("duo_small"), **team.by_name("duo_medium")}
    assert {name: [r.info.status for r in rs] for name, rs in runs.items()} == {name: ["FINISHED"] for name in PAIRS}
    assert [r.info.status for r in team.entry("duo", "ingest")] == ["FINISHED"]
    sweeps = team.entry("duo", "main")
    assert len(sweeps) == 2
    records = [json.loads(team.download(f"runs:/{s.info.run_id}/{names.PAIRS_FILE}").read_text()) for s in sweeps]
    assert [{f"{p['model']}_{p['lr']}": p["run_id"] for p in pairs} for pairs in records] == [
        {name: rs[0].info.run_id for name, rs in runs.items()}
    ] * 2
    trained = [p for pairs in records for p in pairs if not p["reused"]]
    assert sorted(f"{p['model']}_{p['lr']}" for p in trained) == sorted(PAIRS)  # each trained by exactly one of them


def test_two_identical_sweeps_register_each_run_once(team, together):
    for model in ("small", "medium"):
        versions = team.client.search_model_versions(f"name = 'duo_{model}'")
        # the sweeps' default filter, metrics.brier < 0.25: only the runs that pass it are registered
        passing = [r.info.run_id for r in team.runs(f"duo_{model}") if r.data.metrics[names.BRIER] < 0.25]
        assert sorted(v.run_id for v in versions) == sorted(passing)
        assert team.client.get_model_version_by_alias(f"duo_{model}", "champion")


# --- what the steps do against a server, in this process ---


@pytest.fixture
def against(server, monkeypatch):
    import mlflow

    monkeypatch.setenv("MLFLOW_TRACKING_URI", server.tracking_uri)
    mlflow.set_tracking_uri(server.tracking_uri)
    yield mlflow.MlflowClient()
    mlflow.set_tracking_uri(None)


def test_a_step_keeps_its_heartbeat_fresh_against_a_server(against):
    import time

    from steps._coordination import heartbeat

    experiment = against.create_experiment("beat")
    run = against.create_run(experiment, tags={names.TAG_HEARTBEAT: "0"})
    with heartbeat(run.info.run_id, seconds=0.2):
        time.sleep(1.5)
    assert int(against.get_run(run.info.run_id).data.tags[names.TAG_HEARTBEAT]) >= int(time.time()) - 5


def test_a_step_whose_run_another_process_ended_is_asked_to_stop(against, monkeypatch):
    import threading
    import time

    from steps import _lifecycle
    from steps._coordination import heartbeat

    monkeypatch.setattr(_lifecycle, "stop", threading.Event())
    monkeypatch.setattr(_lifecycle, "_reasons", [])
    experiment = against.create_experiment("ended elsewhere")
    run = against.create_run(experiment)
    with heartbeat(run.info.run_id, seconds=0.2):
        time.sleep(0.5)
        assert not _lifecycle.stop.is_set()
        against.set_terminated(run.info.run_id, "FAILED")
        assert _lifecycle.stop.wait(5)
    assert _lifecycle.stop_reason() == f"stopped: its run {run.info.run_id} was ended FAILED by another process"


def test_runs_logging_the_same_new_dataset_at_once_all_link_it(against, monkeypatch):
    # MLflow's SQL store looks a dataset up, then inserts it: on PostgreSQL concurrent loggers collide.
    from concurrent.futures import ThreadPoolExecutor

    import mlflow

    from steps._data import log_input_once_stored

    experiment = against.create_experiment("race")
    # Earlier modules leave another experiment active in this process; set_experiment also exports
    # MLFLOW_EXPERIMENT_ID, which monkeypatch takes back afterwards.
    monkeypatch.setenv("MLFLOW_EXPERIMENT_ID", experiment)
    mlflow.set_experiment(experiment_id=experiment)
    runs = [against.create_run(experiment).info.run_id for _ in range(8)]
    dataset = mlflow.data.from_pandas(pd.DataFrame({"x": [1.0, 2.0]}), source="synthetic", name="same")

    def log(run_id: str) -> None:
        with mlflow.start_run(run_id=run_id):
            log_input_once_stored(dataset, "train", "d")

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(log, runs))
    for run_id in runs:
        assert [i.dataset.name for i in against.get_run(run_id).inputs.dataset_inputs] == ["same"]
