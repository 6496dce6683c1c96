"""Whole or not, on a real SQLite store (steps._stored), and an alias never left on a model whose
files are gone (steps.report). A tiny pyfunc model stands in for a trained network."""

from __future__ import annotations

import shutil
from pathlib import Path

import mlflow
import pandas as pd
import pytest

from madness import names as n
from steps import _stored, report


class Coin(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input: pd.DataFrame):
        return [0.5] * len(model_input)


@pytest.fixture
def run(tracking):
    """A FINISHED run holding what a train run holds: loss.png, features/manifest.json, a model."""
    with mlflow.start_run() as active:
        mlflow.log_text("png", n.LOSS_PLOT)
        mlflow.log_dict({"digest": "x"}, f"{n.FEATURES_DIR}/{n.MANIFEST_FILE}")
        mlflow.pyfunc.log_model(name=n.MODEL_DIR, python_model=Coin(), pip_requirements=["mlflow"])
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


def test_a_run_without_its_loss_plot_is_not_whole(run):
    (Path(mlflow.MlflowClient().get_run(run).info.artifact_uri.removeprefix("file://")) / n.LOSS_PLOT).unlink()
    assert _stored.train_run_problem(mlflow.MlflowClient(), run) == f"its artifact {n.LOSS_PLOT} is missing or empty"


def test_an_alias_on_a_model_whose_files_are_gone_is_removed(run, capsys):
    client = mlflow.MlflowClient()
    version = mlflow.register_model(f"runs:/{run}/{n.MODEL_DIR}", "coin")
    client.set_registered_model_alias("coin", report.CHAMPION, version.version)
    shutil.rmtree(model_folder(run))
    report.drop_broken_champion(client, "coin")
    with pytest.raises(mlflow.exceptions.MlflowException):
        client.get_model_version_by_alias("coin", report.CHAMPION)
    assert f"removed alias champion of coin (version {version.version}, run {run})" in capsys.readouterr().out


def test_an_alias_on_a_whole_model_stays(run):
    client = mlflow.MlflowClient()
    version = mlflow.register_model(f"runs:/{run}/{n.MODEL_DIR}", "coin2")
    client.set_registered_model_alias("coin2", report.CHAMPION, version.version)
    report.drop_broken_champion(client, "coin2")
    assert client.get_model_version_by_alias("coin2", report.CHAMPION).version == version.version
