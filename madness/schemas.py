"""What each Kaggle file must mean, declared as pandera schemas: the documentation of what is accepted.

`madness.kaggle` checks a file's form first (encoding, columns, integers, locations, seed labels,
keys); these schemas then check its values: ranges of seasons, days, scores and overtimes, the
winner's score above the loser's, no team against itself, each game once, every team id known to
the teams file. The first violation becomes one `UserError` line naming the file, its line, the
column, the rule and what is accepted.
"""

from __future__ import annotations

import operator

import numpy as np
import pandas as pd
import pandera.pandas as pa

from madness import names
from madness.cli import FIRST_SEASON, LAST_SEASON
from madness.errors import UserError

MAX_DAYNUM = 200  # days since the season's day zero; Kaggle's last is the women's final, day 155
MAX_SCORE = 300
MAX_OVERTIMES = 20


def _between(low: int, high: int, what: str) -> pa.Check:
    return pa.Check.in_range(low, high, name=f"{what} range", error=f"{what} between {low} and {high}")


def _frame_rule(name: str, columns: tuple[str, ...], test, accepted: str) -> pa.Check:
    """Return a rule over several columns of a row: `test` gets those columns (the ones an error names) in order."""
    return pa.Check(
        lambda games: test(*(games[column] for column in columns)),
        name=name,
        error=accepted,
        statistics={"columns": columns},
    )


def _first_meeting(winner: pd.Series, loser: pd.Series, season: pd.Series, day: pd.Series) -> pd.Series:
    """Return whether each game is the first between its two teams that day, whichever of them won."""
    meetings = pd.DataFrame(
        {"low": np.minimum(winner, loser), "high": np.maximum(winner, loser), "season": season, "day": day}
    )
    return ~meetings.duplicated(keep="first")


_SEASON = pa.Column(int, _between(FIRST_SEASON, LAST_SEASON, "season"))
_TEAM = pa.Column(int, pa.Check.gt(0, name="team id range", error="a team id above 0"))
_SCORE = pa.Column(int, _between(0, MAX_SCORE, "score"))

_RESULTS = {
    names.SEASON: _SEASON,
    names.DAYNUM: pa.Column(int, _between(0, MAX_DAYNUM, "day number")),
    names.WTEAM: _TEAM,
    names.WSCORE: _SCORE,
    names.LTEAM: _TEAM,
    names.LSCORE: _SCORE,
    names.NUMOT: pa.Column(int, _between(0, MAX_OVERTIMES, "overtimes")),
}
_RESULT_RULES = [
    _frame_rule(
        "winner above loser",
        (names.WSCORE, names.LSCORE),
        operator.gt,
        f"{names.WSCORE} above {names.LSCORE} (no ties; winner and loser not swapped)",
    ),
    _frame_rule(
        "no team against itself", (names.WTEAM, names.LTEAM), operator.ne, f"{names.WTEAM} different from {names.LTEAM}"
    ),
    _frame_rule(
        "each game once",
        (names.WTEAM, names.LTEAM, names.SEASON, names.DAYNUM),
        _first_meeting,
        "two teams meet at most once a day (the same game is not listed again with winner and loser swapped)",
    ),
]


RESULTS = pa.DataFrameSchema(_RESULTS, checks=_RESULT_RULES, name="compact results")
DETAILED = pa.DataFrameSchema(
    {
        **_RESULTS,
        **{
            f"{side}{stat}": pa.Column(int, pa.Check.ge(0, name="count range", error="a count of 0 or more"))
            for side in ("W", "L")
            for stat in names.BOX_STATS
        },
    },
    checks=[
        *_RESULT_RULES,
        *(
            _frame_rule(
                "made within attempted",
                (f"{side}{made}", f"{side}{attempted}"),
                operator.le,
                f"{side}{made} at most {side}{attempted}",
            )
            for side in ("W", "L")
            for made, attempted in (("FGM", "FGA"), ("FGM3", "FGA3"), ("FTM", "FTA"))
        ),
    ],
    name="detailed results",
)
SEEDS = pa.DataFrameSchema({names.SEASON: _SEASON, names.TEAM_ID: _TEAM}, name="seeds")
TEAMS = pa.DataFrameSchema(
    {
        names.TEAM_ID: _TEAM,
        names.TEAM_NAME: pa.Column(
            object, pa.Check.str_length(min_value=1, name="named", error="a name that is not empty")
        ),
    },
    name="teams",
)

SCHEMAS: dict[str, pa.DataFrameSchema] = {
    names.REGULAR_COMPACT: RESULTS,
    names.REGULAR_DETAILED: DETAILED,
    names.TOURNEY_COMPACT: RESULTS,
    names.TOURNEY_SEEDS: SEEDS,
    names.TEAMS: TEAMS,
}


def known_teams(stem: str, team_ids, teams_file: str) -> pa.DataFrameSchema:
    """Return the rule that every team id of the file `stem` is one of `team_ids`, those of the league's teams file."""
    known = pa.Check.isin(set(team_ids), name="known team", error=f"a TeamID listed in {teams_file}")
    columns = [column for column in (names.WTEAM, names.LTEAM, names.TEAM_ID) if column in SCHEMAS[stem].columns]
    return pa.DataFrameSchema({column: pa.Column(int, known) for column in columns})


def validate(frame: pd.DataFrame, schema: pa.DataFrameSchema, source: str) -> None:
    """Check `frame` (read from the file `source`, its index the file's rows) against `schema`;
    raise a one-line UserError for the first violation."""
    try:
        schema.validate(frame)
    except pa.errors.SchemaError as err:
        if err.reason_code == pa.errors.SchemaErrorReason.CHECK_ERROR:
            raise  # a rule that could not run is a bug, not bad data
        raise UserError(_violation(err, frame, source)) from None


def _violation(err: pa.errors.SchemaError, frame: pd.DataFrame, source: str) -> str:
    failures = err.failure_cases
    if "index" not in failures or failures["index"].isna().all():  # a rule about the whole column
        return f"{source}: {err}"
    row = int(failures["index"].dropna().min())
    columns = (err.check.statistics or {}).get("columns") or (err.schema.name,)
    found = ", ".join(
        f"{column}={value!r}" for column, value in zip(columns, frame.loc[row, list(columns)].tolist(), strict=True)
    )
    others = len(failures["index"].unique()) - 1
    more = f" ({others} more {'line' if others == 1 else 'lines'} like it)" if others else ""
    return (
        f"{source}: line {row + 2}, column {columns[0]}: rule '{err.check.name}' broken by {found}{more}; "
        f"accepted: {err.check.error}"
    )
