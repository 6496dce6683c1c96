"""The sweep report's pure parts: the runs table, its Markdown, and the best configuration."""

from __future__ import annotations

import hashlib
import json
import math

import pandas as pd

from madness import names, scoring
from madness.names import Status

INCOMPLETE = "INCOMPLETE"  # FINISHED, but its model or artifacts are gone
SEEDS = "seeds"
TABLE_COLUMNS = [
    "model",
    "lr",
    SEEDS,
    names.BRIER_MEAN,
    names.BRIER_SD,
    names.BRIER,
    names.LOG_LOSS,
    names.ACCURACY,
    names.BASELINE_BRIER,
    names.BEST_EPOCH,
    "duration_s",
    "status",
    "reused",
    "run_id",
]


BRIER_WORDS = (
    "brier: the pair's model on the test games (with seeds > 1, its networks' averaged prediction); "
    "brier_mean +- brier_sd: each seed's network alone, their mean and standard deviation; "
    "lower is better, a constant 0.5 scores 0.25"
)


def pair_scores(metrics: dict, seeds: int) -> dict:
    """Return a run's Brier columns: its seeds, the mean and standard deviation of its members' Brier, and
    its model's. A single-seed run's mean is its Brier, and it has no spread."""
    brier = metrics.get(names.BRIER)
    return {
        SEEDS: seeds,
        names.BRIER_MEAN: metrics.get(names.BRIER_MEAN, brier),
        names.BRIER_SD: metrics.get(names.BRIER_SD, math.nan),
        names.BRIER: brier,
    }


def runs_table(rows: list[dict]) -> pd.DataFrame:
    """Return one row per pair, best mean Brier first (a single seed's Brier is its mean); failed pairs
    (no Brier) last."""
    table = pd.DataFrame(rows, columns=TABLE_COLUMNS)
    return table.sort_values(
        [names.BRIER_MEAN, names.BRIER, "model", "lr"], na_position="last", kind="stable", ignore_index=True
    )


_FORMATS = {names.BEST_EPOCH: "{:.0f}", "duration_s": "{:.1f}", SEEDS: "{:.0f}"}


def _cell(column: str, value) -> str:
    if pd.isna(value):
        return ""
    if isinstance(value, float):
        return _FORMATS.get(column, "{:.4f}").format(value)
    return str(value)


def markdown(table: pd.DataFrame) -> str:
    """Return the table as GitHub-style Markdown (pandas' own needs the optional `tabulate`)."""
    lines = [list(table.columns), ["---"] * len(table.columns)] + [
        [_cell(c, v) for c, v in zip(table.columns, row, strict=True)] for row in table.itertuples(index=False)
    ]
    return "".join(f"| {' | '.join(cells)} |\n" for cells in lines)


def ranked(table: pd.DataFrame) -> pd.DataFrame:
    """Return the rows that may be best or registered: whole FINISHED runs with a Brier score, best mean first."""
    return table[table["status"] == Status.FINISHED].dropna(subset=[names.BRIER_MEAN])


def ranked_row(table: pd.DataFrame, place: int = 0) -> dict | None:
    """Return the ranked row at `place` (0: the best, 1: the runner-up) as a dict, or None when fewer rows are ranked."""
    scored = ranked(table)
    return scored.iloc[place].to_dict() if len(scored) > place else None


def same_games(a: pd.DataFrame, b: pd.DataFrame) -> bool:
    """Two runs' predictions files cover the very same test rows, in the same order."""
    keys = [names.SEASON, names.T1_TEAM, names.T2_TEAM, names.TARGET]
    return len(a) == len(b) and a[keys].reset_index(drop=True).equals(b[keys].reset_index(drop=True))


def brier_text(row: dict) -> str:
    """Return `brier 0.1650` for a single seed; `mean brier 0.1650 +- 0.0040 over 3 seeds` for several."""
    seeds = int(row.get(SEEDS) or 1)
    if seeds == 1:
        return f"brier {row[names.BRIER]:.4f}"
    return f"mean brier {row[names.BRIER_MEAN]:.4f} +- {row[names.BRIER_SD]:.4f} over {seeds} seeds"


NO_RUNNER_UP = "no runner-up to compare it with"


def how_sure(best: dict, runner_up: dict | None, best_predictions, runner_up_predictions) -> str:
    """Say whether the games both were scored on tell the best from the runner-up (paired bootstrap
    over the same games, from their predictions.csv), or why that cannot be said."""
    if runner_up is None:
        return NO_RUNNER_UP
    if not same_games(best_predictions, runner_up_predictions):
        return "not compared with the runner-up: the two were scored on different games"
    interval = scoring.paired_brier_difference(  # the best's Brier minus the runner-up's
        best_predictions[names.TARGET],
        best_predictions[names.PREDICTION],
        runner_up_predictions[names.PREDICTION],
        scoring.game_labels(best_predictions),
    )
    return comparison_text(best, runner_up, interval, len(best_predictions) // 2)


def comparison_text(best: dict, runner_up: dict, interval: scoring.Interval, games: int) -> str:
    """Return what the report says of its winner against the runner-up, from the interval of their Brier
    difference over `games` games. The two logged models are compared (with several seeds, each
    pair's average)."""
    verdict = (
        "the best is distinguishable from the runner-up"
        if interval.excludes_zero
        else "not distinguishable from the runner-up: on these games the ranking of the two is noise"
    )
    models = "" if int(best.get(SEEDS) or 1) == 1 and int(runner_up.get(SEEDS) or 1) == 1 else "the averaged models' "
    return (
        f"against the runner-up {runner_up['model']} with learning rate {runner_up['lr']} ({brier_text(runner_up)}): "
        f"{models}difference {interval.estimate:+.4f}, {scoring.BOOTSTRAP_LEVEL:.0%} interval "
        f"[{interval.low:+.4f}, {interval.high:+.4f}] over {games} games resampled: {verdict}"
    )


def chart_frame(table: pd.DataFrame) -> pd.DataFrame:
    """Return the rows with a Brier score and a numeric learning rate, for the Brier-against-lr chart."""
    frame = table.dropna(subset=[names.BRIER_MEAN]).copy()
    frame["lr"] = pd.to_numeric(frame["lr"], errors="coerce")
    return frame.dropna(subset=["lr"])


def figures_digest(chart: pd.DataFrame, grid: list[dict], drawn_by: list[str]) -> str:
    """Return what the report's two charts are drawn from: the Brier chart's rows, each pair's cell of the loss
    grid (model, lr, run and its curves, in order) and `drawn_by` (the drawing code and matplotlib's
    version). Equal digests draw the same figures, so a report may take them from an earlier one."""
    payload = {
        "chart": chart[["model", "lr", names.BRIER_MEAN, names.BRIER_SD]].astype(object).values.tolist(),
        "grid": grid,
        "drawn_by": drawn_by,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=repr).encode()).hexdigest()
