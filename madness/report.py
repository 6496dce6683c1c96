"""The sweep report's pure parts: the runs table, its Markdown, and the best configuration."""

from __future__ import annotations

import hashlib
import json
import math

import pandas as pd

from madness import names as n

INCOMPLETE = "INCOMPLETE"  # FINISHED, but its model or artifacts are gone
TABLE_COLUMNS = [
    "model",
    "lr",
    n.BRIER,
    n.LOG_LOSS,
    n.ACCURACY,
    n.BASELINE_BRIER,
    n.BEST_EPOCH,
    "duration_s",
    "status",
    "reused",
    "run_id",
]


def runs_table(rows: list[dict]) -> pd.DataFrame:
    """One row per pair, best Brier first; failed pairs (no Brier) last."""
    table = pd.DataFrame(rows, columns=TABLE_COLUMNS)
    return table.sort_values([n.BRIER, "model", "lr"], na_position="last", kind="stable", ignore_index=True)


_FORMATS = {n.BEST_EPOCH: "{:.0f}", "duration_s": "{:.1f}"}


def _cell(column: str, value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        return _FORMATS.get(column, "{:.4f}").format(value)
    return str(value)


def markdown(table: pd.DataFrame) -> str:
    """A GitHub-style Markdown table (pandas' own needs the optional `tabulate`)."""
    header = "| " + " | ".join(table.columns) + " |"
    rule = "| " + " | ".join("---" for _ in table.columns) + " |"
    body = [
        "| " + " | ".join(_cell(c, v) for c, v in zip(table.columns, row, strict=True)) + " |"
        for row in table.itertuples(index=False)
    ]
    return "\n".join([header, rule, *body]) + "\n"


def ranked(table: pd.DataFrame) -> pd.DataFrame:
    """The rows that may be best or registered: whole FINISHED runs with a Brier score, best first."""
    return table[table["status"] == "FINISHED"].dropna(subset=[n.BRIER])


def best_row(table: pd.DataFrame) -> dict | None:
    scored = ranked(table)
    return None if scored.empty else scored.iloc[0].to_dict()


def chart_frame(table: pd.DataFrame) -> pd.DataFrame:
    """Rows with a Brier score and a numeric learning rate, for the Brier-against-lr chart."""
    frame = table.dropna(subset=[n.BRIER]).copy()
    frame["lr"] = pd.to_numeric(frame["lr"], errors="coerce")
    return frame.dropna(subset=["lr"])


def figures_digest(chart: pd.DataFrame, grid: list[dict], drawn_by: list[str]) -> str:
    """What the report's two charts are drawn from: the Brier chart's rows, each pair's cell of the loss
    grid (model, lr, run and its curves, in order) and `drawn_by` (the drawing code and matplotlib's
    version). Equal digests draw the same figures, so a report may take them from an earlier one."""
    payload = {
        "chart": chart[["model", "lr", n.BRIER]].astype(object).values.tolist(),
        "grid": grid,
        "drawn_by": drawn_by,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=repr).encode()).hexdigest()
