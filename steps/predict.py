"""Predict: a Kaggle submission for every pair of a season's seeded tournament teams.

Its params are PARAMS below (and MLproject); the season's tournament need not have been played.
It writes `output` and the run artifact `submission.csv` (both or neither) in Kaggle's format:
`ID,Pred` with ID `SSSS_TTTT_TTTT` (lower team id first) and Pred the probability that the lower
id wins, one row per pair of seeded teams, per league.

    mlflow run . -e predict -P model_uri=runs:/<run id>/model -P season=2024 -P output=submission.csv \\
        --env-manager local
"""

from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

import mlflow
import pandas as pd

import madness.features
from madness import names
from madness.cli import DATA_PARAMS, Param, not_empty, parse, season
from madness.errors import UserError
from steps._data import predict_rows, read_data_for_model
from steps._entry import entry_point, run_as_script, start_run
from steps._failures import unwritable
from steps.pyfunc_model import load_model

PARAMS = (
    Param("model_uri", "string", None, "model: runs:/<id>/model or models:/<name>@<alias>"),
    Param("season", "int", 2024, "season whose seeded teams are paired", season),
    *(p for p in DATA_PARAMS if p.name in ("data", "league", "seed")),
    Param("output", "string", f"outputs/{names.SUBMISSION_FILE}", "path of the submission CSV to write", not_empty),
)


def submission_rows(files, team_season: pd.DataFrame, season_: int) -> pd.DataFrame:
    """Return every pair of seeded teams of `season_`, per league, with both teams' features."""
    frames = []
    for f in files:
        pairs = madness.features.seeded_pairs(f.seeds, season_)
        teams = team_season[team_season[names.LEAGUE] == f.league].drop(columns=names.LEAGUE)
        frames.append(madness.features.pair_rows(pairs, teams))
    return pd.concat(frames, ignore_index=True)


def submission(rows: pd.DataFrame, probabilities) -> pd.DataFrame:
    """Return the submission: each row's ID (SSSS_TTTT_TTTT) and `probabilities` as Pred."""
    ids = [f"{s}_{a}_{b}" for s, a, b in zip(rows[names.SEASON], rows[names.T1_TEAM], rows[names.T2_TEAM], strict=True)]
    return pd.DataFrame({names.SUBMISSION_ID: ids, names.SUBMISSION_PRED: probabilities})


def check_writable(path: Path) -> None:
    """Refuse an output that cannot be written as a file. Checked before the model loads, so a bad
    output costs a second, not a prediction; nothing is created here."""
    if path.is_dir():
        raise UserError(f"output {path} is a directory; give the path of a file, e.g. {path / names.SUBMISSION_FILE}")
    why = unwritable(path)
    if why:
        raise UserError(f"cannot write output {path}: {why}")


@contextmanager
def writing(path: Path):
    """Turn an OSError in the block into the user's one-line error about `path`."""
    try:
        yield
    except OSError as err:
        raise UserError(f"cannot write output {path}: {err.strerror or err}") from None


def write_and_log(local: Path, output: Path) -> None:
    """Copy `local` to `output` and log `local` as an artifact of the active run: both or neither.

    The copy is written in full beside `output` first (a full or read-only disk fails here, before
    anything is logged), then the artifact is logged, then the copy is renamed onto `output`, which
    cannot half-happen. The `.partial` file never outlives the call."""
    partial = output.with_name(f".{output.name}.partial")
    try:
        with writing(output):
            output.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(local, partial)
        mlflow.log_artifact(str(local))
        with writing(output):
            os.replace(partial, output)
    finally:
        partial.unlink(missing_ok=True)


@entry_point
def main(argv=None):
    """Run the predict entry point: parse its params, write and log the submission (see the module docstring)."""
    values, raw = parse("predict", __doc__.splitlines()[0], PARAMS, argv)
    output = Path(values["output"])
    check_writable(output)
    model, model_run = load_model(values["model_uri"])
    with start_run("predict", raw), tempfile.TemporaryDirectory() as tmp:
        files, _, team_season = read_data_for_model(values, model_run, Path(tmp))
        rows = submission_rows(files, team_season, values["season"])
        result = submission(rows, predict_rows(model, rows, values["data"]))
        local = Path(tmp) / names.SUBMISSION_FILE
        result.to_csv(local, index=False, lineterminator="\n")
        replaced = output.exists()
        write_and_log(local, output)
        run_id = mlflow.active_run().info.run_id
    print(
        f"predict run {run_id}: {len(result)} pairs for season {values['season']} written to {values['output']}"
        + (" (it replaced the file that was there)" if replaced else "")
    )


if __name__ == "__main__":
    run_as_script(main)
