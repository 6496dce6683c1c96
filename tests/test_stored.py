"""Whole or not (steps._stored): a model folder built in code as MLflow writes it, and runs on a real
SQLite store; an alias never left on a model whose files are gone, and the report's rows read by
search (steps.report). A tiny pyfunc model stands in for a trained network."""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

import mlflow
import pandas as pd
import pytest
import yaml

from madness import names
from madness import report as tables
from steps import _stored, report

MLMODEL = {
    "flavors": {
        "python_function": {
            "python_model": "python_model.pkl",
            "code": "code",
            "env": {"conda": "conda.yaml", "virtualenv": "python_env.yaml"},
            "artifacts": {"keras_model": {"path": "artifacts/network.keras", "uri": "/tmp/x/network.keras"}},
        }
    }
}


@pytest.fixture
def model_dir(tmp_path) -> Path:
    (tmp_path / "MLmodel").write_text(yaml.safe_dump(MLMODEL))
    for name in ("python_model.pkl", "conda.yaml", "python_env.yaml", "code/steps/train.py"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x")
    (tmp_path / "artifacts").mkdir()
    with zipfile.ZipFile(tmp_path / "artifacts/network.keras", "w") as archive:
        archive.writestr("model.weights.h5", b"w" * 5000)
    return tmp_path


def test_a_whole_model_has_no_problem(model_dir):
    assert _stored.model_folder_problem(model_dir) is None


def test_a_model_without_mlmodel_is_named_so(model_dir):
    (model_dir / "MLmodel").unlink()
    assert _stored.model_folder_problem(model_dir) == "its model has no MLmodel file"


def test_an_empty_folder_is_not_a_model(tmp_path):
    assert _stored.model_folder_problem(tmp_path) == "its model has no MLmodel file"


def test_an_unreadable_mlmodel_is_named_so(model_dir):
    (model_dir / "MLmodel").write_text("flavors: [unclosed")
    assert _stored.model_folder_problem(model_dir) == "its model's MLmodel file is unreadable"


@pytest.mark.parametrize("name", ["artifacts/network.keras", "python_model.pkl", "conda.yaml", "code"])
def test_a_missing_named_file_is_named(model_dir, name):
    path = model_dir / name
    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink()
    assert _stored.model_folder_problem(model_dir) == f"its model lacks {name}"


def test_an_empty_named_file_is_named(model_dir):
    (model_dir / "python_model.pkl").write_bytes(b"")
    assert _stored.model_folder_problem(model_dir) == "its model lacks python_model.pkl"


def test_a_cut_short_network_is_damaged(model_dir):
    path = model_dir / "artifacts/network.keras"
    path.write_bytes(path.read_bytes()[:200])
    assert _stored.model_folder_problem(model_dir) == "its model's artifacts/network.keras is damaged"


def test_a_network_with_a_flipped_byte_is_damaged(model_dir):
    path = model_dir / "artifacts/network.keras"
    data = bytearray(path.read_bytes())
    data[100] ^= 0xFF  # inside the stored member: its CRC no longer matches
    path.write_bytes(bytes(data))
    assert _stored.model_folder_problem(model_dir) == "its model's artifacts/network.keras is damaged"


class Coin(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input: pd.DataFrame):
        return [0.5] * len(model_input)


@pytest.fixture
def run(tracking):
    """A FINISHED run holding what a train run holds: loss.png, features/manifest.json, a model."""
    with mlflow.start_run() as active:
        mlflow.log_text("png", names.LOSS_PLOT)
        mlflow.log_dict({"digest": "x"}, f"{names.FEATURES_DIR}/{names.MANIFEST_FILE}")
        mlflow.pyfunc.log_model(name=names.MODEL_DIR, python_model=Coin(), pip_requirements=["mlflow"])
    return active.info.run_id


def model_folder(run_id: str) -> Path:
    client = mlflow.MlflowClient()
    run = client.get_run(run_id)
    model = next(m for m in client.search_logged_models([run.info.experiment_id]) if m.source_run_id == run_id)
    return Path(model.artifact_location.removeprefix("file://"))


def test_a_run_holding_its_files_is_whole(run):
    assert _stored.train_run_problem(mlflow.MlflowClient(), run) is None


def test_a_run_whose_model_folder_is_gone_is_not_whole(run):
    shutil.rmtree(model_folder(run))
    assert _stored.train_run_problem(mlflow.MlflowClient(), run) is not None


def test_a_local_model_is_checked_in_its_own_folder(run):
    client = mlflow.MlflowClient()
    assert _stored.local_model_folder(client, client.get_run(run)) == model_folder(run)
    (model_folder(run) / "network.keras").write_bytes(b"PK\x03\x04 cut short")
    assert _stored.model_problem(client, client.get_run(run)) == "its model's network.keras is damaged"


def test_a_local_model_folder_that_is_gone_is_named(run):
    folder = model_folder(run)
    shutil.rmtree(folder)
    assert (
        _stored.model_problem(mlflow.MlflowClient(), mlflow.get_run(run))
        == f"its model cannot be fetched (its folder {folder} is gone)"
    )


def test_a_run_without_its_loss_plot_is_not_whole(run):
    (Path(mlflow.MlflowClient().get_run(run).info.artifact_uri.removeprefix("file://")) / names.LOSS_PLOT).unlink()
    assert (
        _stored.train_run_problem(mlflow.MlflowClient(), run) == f"its artifact {names.LOSS_PLOT} is missing or empty"
    )


def test_a_run_with_an_empty_loss_plot_is_not_whole(run):
    artifacts = Path(mlflow.MlflowClient().get_run(run).info.artifact_uri.removeprefix("file://"))
    (artifacts / names.LOSS_PLOT).write_bytes(b"")
    assert (
        _stored.train_run_problem(mlflow.MlflowClient(), run) == f"its artifact {names.LOSS_PLOT} is missing or empty"
    )


def test_an_alias_on_a_model_whose_files_are_gone_is_removed(run, capsys):
    client = mlflow.MlflowClient()
    version = mlflow.register_model(f"runs:/{run}/{names.MODEL_DIR}", "coin")
    client.set_registered_model_alias("coin", report.CHAMPION, version.version)
    shutil.rmtree(model_folder(run))
    report.drop_broken_champion(client, "coin")
    with pytest.raises(mlflow.exceptions.MlflowException):
        client.get_model_version_by_alias("coin", report.CHAMPION)
    assert f"removed alias champion of coin (version {version.version}, run {run})" in capsys.readouterr().out


def test_an_alias_on_a_whole_model_stays(run):
    client = mlflow.MlflowClient()
    version = mlflow.register_model(f"runs:/{run}/{names.MODEL_DIR}", "coin2")
    client.set_registered_model_alias("coin2", report.CHAMPION, version.version)
    report.drop_broken_champion(client, "coin2")
    assert client.get_model_version_by_alias("coin2", report.CHAMPION).version == version.version


def test_a_broken_overall_champion_is_removed_when_no_run_passes_the_filter(run, capsys):
    client = mlflow.MlflowClient()
    version = mlflow.register_model(f"runs:/{run}/{names.MODEL_DIR}", "overall")
    client.set_registered_model_alias("overall", report.CHAMPION, version.version)
    shutil.rmtree(model_folder(run))
    with mlflow.start_run() as sweep:
        mlflow.log_param("prefix", "overall")
    pairs = [{"model": "small", "lr": "0.1", "experiment": "overall_small", "run_id": run}]
    report.register(client, client.get_run(sweep.info.run_id), pairs, tables.runs_table([]), passing=set())
    with pytest.raises(mlflow.exceptions.MlflowException):
        client.get_model_version_by_alias("overall", report.CHAMPION)
    assert f"removed alias champion of overall (version {version.version}, run {run})" in capsys.readouterr().out


class Counting(mlflow.MlflowClient):
    """A client that counts its get_run and search_runs calls; with `search=False` every search finds
    nothing, so the report reads each run with get_run: what it did before it searched."""

    def __init__(self, search: bool = True):
        super().__init__()
        self.search, self.calls = search, {"get_run": 0, "search_runs": 0}

    def get_run(self, run_id):
        self.calls["get_run"] += 1
        return super().get_run(run_id)

    def search_runs(self, *args, **kwargs):
        self.calls["search_runs"] += 1
        return super().search_runs(*args, **kwargs) if self.search else []


def test_the_report_reads_its_runs_by_search_in_chunks_with_the_rows_get_run_gave(tracking, monkeypatch, capsys):
    client = mlflow.MlflowClient()
    default, other = mlflow.get_experiment_by_name("tests").experiment_id, mlflow.create_experiment("other")
    ids = []
    briers = [(default, 0.2), (other, 0.21), (default, 0.22), (other, 0.23)]
    for epoch, (experiment, brier) in enumerate(briers, start=1):
        with mlflow.start_run(experiment_id=experiment) as active:
            mlflow.log_metrics({names.BRIER: brier, names.BEST_EPOCH: epoch})
        ids.append((experiment, active.info.run_id))
    client.delete_run(ids[1][1])  # still listed, as get_run gives it
    ids.append((default, client.create_run(default).info.run_id))  # still RUNNING
    pairs = [
        {"model": f"m{i}", "lr": "0.1", "experiment_id": experiment, "run_id": run_id}
        for i, (experiment, run_id) in enumerate(reversed(ids))
    ]
    pairs.insert(2, {"model": "never", "lr": "0.1", "experiment_id": default, "run_id": None, "status": "FAILED"})
    monkeypatch.setattr(report, "IDS_PER_SEARCH", 2)

    searched, one_by_one = Counting(), Counting(search=False)
    rows = report.table_rows(searched, pairs)
    assert searched.calls == {"get_run": 0, "search_runs": 3}  # 5 runs, 2 per search
    assert rows == report.table_rows(one_by_one, pairs) and one_by_one.calls["get_run"] == 5
    assert [row["run_id"] for row in rows] == [p["run_id"] or "" for p in pairs]
    assert [row.get(names.BRIER) for row in rows] == [None, 0.23, None, 0.22, 0.21, 0.2]
    capsys.readouterr()  # the lines naming runs without their files


def test_the_report_fails_on_a_pairs_run_that_is_gone_as_get_run_does(tracking):
    pairs = [
        {
            "model": "m",
            "lr": "0.1",
            "experiment_id": mlflow.get_experiment_by_name("tests").experiment_id,
            "run_id": "0123456789abcdef0123456789abcdef",
        }
    ]
    with pytest.raises(mlflow.exceptions.MlflowException, match="0123456789abcdef0123456789abcdef"):
        report.table_rows(mlflow.MlflowClient(), pairs)


@pytest.mark.parametrize("prefix", ["it's", 'say "hi"', "both ' and \""])
def test_a_quote_in_the_prefix_registers_and_reuses_the_version(run, prefix):
    # the name goes into no search filter, where a quote would end the string early
    client = mlflow.MlflowClient()
    name = f"{prefix}_small"
    rows = pd.DataFrame({"run_id": [run]})
    report.register_versions(client, name, rows)
    report.register_versions(client, name, rows)
    (version,) = client.search_model_versions(f"run_id = '{run}'")
    assert (version.name, str(version.version)) == (name, "1")
    assert str(client.get_model_version_by_alias(name, report.CHAMPION).version) == "1"
