"""Evaluate: score a logged model on a range of tournament seasons, beside the seed baseline.

Its params are PARAMS below (and MLproject); what it logs is the README's table "What each run
records". The seed-difference baseline is fit on the tournaments from `baseline_from` to the season
before `first_season`.

    mlflow run . -e evaluate -P model_uri=runs:/<run id>/model --env-manager local
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import mlflow

from madness import features, names, plots, scoring
from madness.cli import DATA_PARAMS, Param, parse, season
from madness.errors import UserError
from steps._data import predict_rows, read_data_for_model
from steps._entry import entry_point, run_as_script, start_run
from steps.pyfunc_model import load_model

PARAMS = (
    Param("model_uri", "string", None, "model to score: runs:/<id>/model or models:/<name>@<alias>"),
    *(p for p in DATA_PARAMS if p.name in ("data", "league", "seed")),
    Param("first_season", "int", 2022, "first scored season", season),
    Param("last_season", "int", 2023, "last scored season", season),
    Param("baseline_from", "int", 2003, "first season the seed baseline is fit on", season),
)


def check_seasons(values: dict) -> None:
    """Raise UserError unless baseline_from < first_season <= last_season."""
    if not values["baseline_from"] < values["first_season"] <= values["last_season"]:
        raise UserError(
            "seasons must satisfy baseline_from < first_season <= last_season, got "
            f"{values['baseline_from']} < {values['first_season']} <= {values['last_season']}"
        )


def scored_and_baseline_rows(games, values: dict):
    """Return the games of the scored seasons and those the baseline is fit on; raise UserError when either is empty."""
    seasons = games[names.SEASON]
    scored = games[(seasons >= values["first_season"]) & (seasons <= values["last_season"])]
    history = games[(seasons >= values["baseline_from"]) & (seasons < values["first_season"])]
    for rows, what in (
        (scored, f"{values['first_season']}-{values['last_season']}"),
        (history, f"{values['baseline_from']}-{values['first_season'] - 1} (for the baseline)"),
    ):
        if rows.empty:
            raise UserError(
                f"no tournament games in seasons {what}; tournaments in the data: {features.season_span(seasons)}"
            )
    return scored, history


@entry_point
def main(argv=None):
    """Run the evaluate entry point: parse its params, score the model, log the run (see the module docstring)."""
    values, raw = parse("evaluate", __doc__.splitlines()[0], PARAMS, argv)
    check_seasons(values)
    model, evaluated_run = load_model(values["model_uri"])
    with start_run("evaluate", raw) as run, tempfile.TemporaryDirectory() as tmp:
        _, games, _ = read_data_for_model(values, evaluated_run, Path(tmp))
        scored, history = scored_and_baseline_rows(games, values)
        y = scored[names.TARGET].to_numpy(dtype="float64")
        p_model = predict_rows(model, scored, values["data"])
        p_base = scoring.seed_baseline(history, scored)
        scores = {**scoring.all_scores(y, p_model), names.BASELINE_BRIER: scoring.brier(y, p_base)}
        mlflow.log_metrics({**scores, names.N_GAMES: len(y) // 2})
        title = f"Calibration, seasons {values['first_season']}-{values['last_season']}"
        mlflow.log_figure(plots.calibration_figure(y, p_model, p_base, title), names.CALIBRATION_PLOT)
    print(
        f"evaluate run {run.info.run_id}: {values['model_uri']} on {len(y) // 2} games: "
        f"brier {scores[names.BRIER]:.4f}, seed baseline {scores[names.BASELINE_BRIER]:.4f}"
    )


if __name__ == "__main__":
    run_as_script(main)
