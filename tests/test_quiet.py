"""A failing step prints its one line and nothing else: no TensorFlow start-up notices, no MLflow
store or schema chatter.

One subprocess does everything that used to print something first, on a store that does not exist
yet: it creates the store's tables, imports the served model's code, logs the three datasets,
imports TensorFlow and trains until the loss is no longer a number.
"""

from __future__ import annotations

import pytest

from conftest import run_cli


@pytest.mark.slow
def test_a_diverging_training_prints_only_its_error_line(tmp_path, monkeypatch):
    for name in ("MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME"):
        monkeypatch.delenv(name, raising=False)
    # lr 1e38: one Adam step moves a weight by about the learning rate, so the second overflows
    # float32 whatever the batches; at 1e30 a network may only saturate, its loss a finite 0.5.
    done = run_cli(  # in tmp_path: the new store's default experiment keeps its artifacts in ./mlruns
        ["python", "-m", "steps.train", "--model", "small", "--lr", "1e38", "--epochs", "2", "--league", "W"],
        cwd=tmp_path,
        env={"MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"},
        timeout=300,
    )
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.startswith("error: training diverged at learning rate lr=1e+38"), done.stderr
    assert done.stderr.count("\n") == 1 and done.stderr.endswith("\n"), done.stderr
