"""The report's two figures are drawn once per set of inputs: a later report whose runs, scores and
curves (and drawing code) are unchanged copies them from the earlier report's run, and only when
they are stored whole; and the pairs whose network predicts a constant are named. Real SQLite store,
real matplotlib."""

from __future__ import annotations

from pathlib import Path

import mlflow
import pandas as pd
import pytest
from mlflow.entities import Metric

from madness import names
from steps import report
from steps._stored import png_whole


def train_like(experiment_id: str, brier: float, losses: list[float]) -> str:
    with mlflow.start_run(experiment_id=experiment_id) as active:
        mlflow.log_metric(names.BRIER, brier)
        client = mlflow.MlflowClient()
        client.log_batch(
            active.info.run_id,
            metrics=[
                Metric(key, loss + shift, 0, epoch)
                for epoch, loss in enumerate(losses, start=1)
                for key, shift in ((names.TRAIN_LOSS, 0.0), (names.VAL_LOSS, 0.01))
            ],
        )
    return active.info.run_id


@pytest.fixture
def pairs(tracking):
    experiment = mlflow.get_experiment_by_name("tests").experiment_id
    return [
        {
            "model": "small",
            "lr": lr,
            "experiment": "tests",
            "experiment_id": experiment,
            "run_id": train_like(experiment, brier, [0.3, 0.25, 0.24]),
            "reused": True,
            "status": "FINISHED",
        }
        for lr, brier in (("0.01", 0.21), ("0.1", 0.23))
    ]


def sweep(pairs: list[dict]) -> str:
    """A sweep run holding pairs.json, reported as steps.main does."""
    with mlflow.start_run(run_name="sweep") as active:
        mlflow.log_dict(pairs, names.PAIRS_FILE)
        summary = report.report(active.info.run_id, report.DEFAULT_FILTER, False)
    return active.info.run_id, summary


def figure(run_id: str, name: str) -> Path:
    return Path(mlflow.get_run(run_id).info.artifact_uri.removeprefix("file://")) / names.REPORT_DIR / name


def test_a_report_with_unchanged_inputs_copies_the_earlier_figures(pairs, capsys):
    first, summary = sweep(pairs)
    assert summary["figures_from"] is None
    second, again = sweep(pairs)
    assert again["figures_from"] == first and again["figures_digest"] == summary["figures_digest"]
    for name in report.FIGURES:
        assert figure(second, name).read_bytes() == figure(first, name).read_bytes()
        assert png_whole(figure(second, name))
    assert mlflow.get_run(second).data.tags[names.TAG_FIGURES_DIGEST] == summary["figures_digest"]
    assert f"figures unchanged since run {first}" in capsys.readouterr().out


def test_a_changed_curve_draws_the_figures_again(pairs):
    first, summary = sweep(pairs)
    for key in (names.TRAIN_LOSS, names.VAL_LOSS):
        mlflow.MlflowClient().log_metric(pairs[0]["run_id"], key, 0.2, step=4)
    _, again = sweep(pairs)
    assert again["figures_from"] is None and again["figures_digest"] != summary["figures_digest"]


@pytest.mark.parametrize("damage", ["cut short", "gone"])
def test_figures_that_are_not_whole_are_not_copied(pairs, damage):
    first, _ = sweep(pairs)
    broken = figure(first, names.LOSS_GRID)
    if damage == "gone":
        broken.unlink()
    else:
        broken.write_bytes(broken.read_bytes()[:-100])
    second, again = sweep(pairs)
    assert again["figures_from"] is None
    assert png_whole(figure(second, names.LOSS_GRID))
    _, third = sweep(pairs)
    assert third["figures_from"] == second  # the whole one, not the damaged one


# --- how sure the best is: its predictions against the runner-up's ---


def row(run_id: str, lr: str, brier: float) -> dict:
    return {"model": "small", "lr": lr, names.BRIER: brier, "run_id": run_id}


def with_predictions(run_id: str, seasons: tuple[int, int]) -> None:
    frame = pd.DataFrame(
        {
            names.SEASON: seasons,
            names.T1_TEAM: [1, 2],
            names.T2_TEAM: [2, 1],
            names.TARGET: [1, 0],
            names.PREDICTION: [0.7, 0.3],
        }
    )
    mlflow.MlflowClient().log_text(run_id, frame.to_csv(index=False), names.PREDICTIONS_FILE)


def test_a_run_without_predictions_is_not_compared_and_the_report_says_which(pairs):
    best, runner_up = row(pairs[0]["run_id"], "0.01", 0.21), row(pairs[1]["run_id"], "0.1", 0.23)
    with_predictions(best["run_id"], (2022, 2022))
    assert report.how_sure(best, runner_up) == (
        f"not compared with the runner-up: run {runner_up['run_id']} has no {names.PREDICTIONS_FILE}"
    )


def test_runs_scored_on_different_games_are_not_compared(pairs):
    best, runner_up = row(pairs[0]["run_id"], "0.01", 0.21), row(pairs[1]["run_id"], "0.1", 0.23)
    with_predictions(best["run_id"], (2022, 2022))
    with_predictions(runner_up["run_id"], (2023, 2023))
    assert report.how_sure(best, runner_up) == (
        "not compared with the runner-up: the two were scored on different games"
    )


def test_a_lone_best_has_no_runner_up(pairs):
    assert report.how_sure(row(pairs[0]["run_id"], "0.01", 0.21), None) == "no runner-up to compare it with"


def test_a_pair_whose_network_predicts_a_constant_is_named_in_the_report(pairs, capsys):
    mlflow.MlflowClient().set_tag(pairs[1]["run_id"], names.TAG_CONSTANT, "true")
    _, summary = sweep(pairs)
    assert summary["constant"] == ["small lr=0.1"]
    (line,) = [line for line in capsys.readouterr().out.splitlines() if line.startswith("constant predictions")]
    assert line.endswith("try a lower learning rate): small lr=0.1")
