"""Predict: a Kaggle submission for every pair of a season's seeded tournament teams.

Inputs: `model_uri` (runs:/<id>/model or models:/<name>@<alias>), `season` (its tournament need not
have been played), the data parameters (`data`, `league`, `seed`), `output` (where to write).
Outputs: `output` and the run artifact `submission.csv`, Kaggle's format: `ID,Pred` with ID
`SSSS_TTTT_TTTT` (lower team id first) and Pred the probability that the lower id wins, one row
per pair of seeded teams, per league.

    mlflow run . -e predict -P model_uri=runs:/<run id>/model -P season=2024 -P output=submission.csv --env-manager local
"""

from __future__ import annotations

import os
from pathlib import Path

import mlflow
import pandas as pd

from madness import dataset as D
from madness import features as F
from madness import names as n
from madness.cli import DATA_PARAMS, Param, not_empty, parse, season
from steps._common import entry_point, load_model, read_data_for_model, require_columns, start_run, temp_dir

_DATA = {p.name: p for p in DATA_PARAMS}
PARAMS = (
    Param("model_uri", "string", None, "model: runs:/<id>/model or models:/<name>@<alias>"),
    Param("season", "int", 2024, "season whose seeded teams are paired", season),
    _DATA["data"], _DATA["league"], _DATA["seed"],
    Param("output", "string", f"outputs/{n.SUBMISSION_FILE}", "path of the submission CSV to write", not_empty),
)


def submission_rows(files, team_season: pd.DataFrame, season_: int) -> pd.DataFrame:
    """Every pair of seeded teams of `season_`, per league, with both teams' features."""
    frames = []
    for f in files:
        pairs = F.seeded_pairs(f.seeds, season_)
        teams = team_season[team_season[n.LEAGUE] == f.league].drop(columns=n.LEAGUE)
        frames.append(F.pair_rows(pairs, teams))
    return pd.concat(frames, ignore_index=True)


def submission(rows: pd.DataFrame, probabilities) -> pd.DataFrame:
    ids = [f"{s}_{a}_{b}" for s, a, b in zip(rows[n.SEASON], rows[n.T1_TEAM], rows[n.T2_TEAM])]
    return pd.DataFrame({n.SUBMISSION_ID: ids, n.SUBMISSION_PRED: probabilities})


def write_atomically(frame: pd.DataFrame, path: Path) -> None:
    """Write beside the target, then rename: a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    frame.to_csv(partial, index=False, lineterminator="\n")
    os.replace(partial, path)


@entry_point
def main(argv=None):
    values, raw = parse("predict", __doc__.splitlines()[0], PARAMS, argv)
    model, model_run, features = load_model(values["model_uri"])
    with start_run("predict", raw), temp_dir() as tmp:
        files, _, team_season = read_data_for_model(values, model_run, Path(tmp))
        rows = submission_rows(files, team_season, values["season"])
        require_columns(rows, features, f"the data at {values['data']}")
        D.check_complete(rows, features)
        result = submission(rows, model.predict(rows[features]))
        local = Path(tmp) / n.SUBMISSION_FILE
        write_atomically(result, local)
        mlflow.log_artifact(str(local))
        write_atomically(result, Path(values["output"]))
        run_id = mlflow.active_run().info.run_id
    print(f"predict run {run_id}: {len(result)} pairs for season {values['season']} written to {values['output']}")


if __name__ == "__main__":
    main()
