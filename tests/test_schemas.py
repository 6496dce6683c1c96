"""madness.schemas: each rule of meaning refuses a file breaking it, in one line naming file, line, column and rule."""

from __future__ import annotations

import shutil

import pandas as pd
import pytest

from leagues import detailed, season_frames, write_folder
from madness import kaggle, names, schemas
from madness.errors import UserError

REGULAR, TOURNEY, SEEDS, TEAMS = (
    f"W{stem}.csv" for stem in (names.REGULAR_COMPACT, names.TOURNEY_COMPACT, names.TOURNEY_SEEDS, names.TEAMS)
)


def set_value(column, value):
    def corrupt(frame, row):
        frame[column] = frame[column].astype(object)
        frame.loc[row, column] = value

    return corrupt


def swap_winner_and_loser(frame, row):
    frame.loc[row, [names.WSCORE, names.LSCORE]] = frame.loc[row, [names.LSCORE, names.WSCORE]].to_numpy()


def tie(frame, row):
    frame.loc[row, names.LSCORE] = frame.loc[row, names.WSCORE]


def against_itself(frame, row):
    frame.loc[row, names.LTEAM] = frame.loc[row, names.WTEAM]


def listed_again_swapped(frame, row):
    again = frame.loc[row].copy()
    again[names.WTEAM], again[names.LTEAM] = frame.loc[row, names.LTEAM], frame.loc[row, names.WTEAM]
    frame.loc[len(frame)] = again


# (file, corruption of a frame's row, rule named, column named)
CASES = {
    "score below 0": (REGULAR, set_value(names.LSCORE, -3), "score range", names.LSCORE),
    "score too high": (TOURNEY, set_value(names.WSCORE, 1000), "score range", names.WSCORE),
    "winner below loser": (REGULAR, swap_winner_and_loser, "winner above loser", names.WSCORE),
    "tie": (TOURNEY, tie, "winner above loser", names.WSCORE),
    "team against itself": (REGULAR, against_itself, "no team against itself", names.WTEAM),
    "game listed twice": (REGULAR, listed_again_swapped, "each game once", names.WTEAM),
    "day before day zero": (REGULAR, set_value(names.DAYNUM, -1), "day number range", names.DAYNUM),
    "day past the season": (TOURNEY, set_value(names.DAYNUM, 400), "day number range", names.DAYNUM),
    "negative overtimes": (REGULAR, set_value(names.NUMOT, -1), "overtimes range", names.NUMOT),
    "too many overtimes": (REGULAR, set_value(names.NUMOT, 99), "overtimes range", names.NUMOT),
    "season before Kaggle's": (REGULAR, set_value(names.SEASON, 1900), "season range", names.SEASON),
    "seed season far ahead": (SEEDS, set_value(names.SEASON, 3000), "season range", names.SEASON),
    "unknown winner": (REGULAR, set_value(names.WTEAM, 999), "known team", names.WTEAM),
    "unknown loser": (TOURNEY, set_value(names.LTEAM, 999), "known team", names.LTEAM),
    "unknown seeded team": (SEEDS, set_value(names.TEAM_ID, 999), "known team", names.TEAM_ID),
    "team id 0": (TEAMS, set_value(names.TEAM_ID, 0), "team id range", names.TEAM_ID),
    "team without a name": (TEAMS, set_value(names.TEAM_NAME, " "), "named", names.TEAM_NAME),
}


def corrupt_file(folder, name, corrupt, row) -> int:
    """Corrupt the frame row `row` of the file `name`; return the file line the error must name."""
    path = folder / name
    frame = pd.read_csv(path, keep_default_na=False)
    corrupt(frame, row)
    frame.to_csv(path, index=False)
    return len(frame) + 1 if corrupt is listed_again_swapped else row + 2  # line 1 is the header


@pytest.fixture
def folder(tmp_path):
    return write_folder(tmp_path / "data", season_frames(seasons=[2001, 2002]))


@pytest.mark.parametrize("case", list(CASES))
def test_each_rule_refuses_a_file_breaking_it(folder, case):
    name, corrupt, rule, column = CASES[case]
    line = corrupt_file(folder, name, corrupt, row=2)
    with pytest.raises(UserError) as err:
        kaggle.read_league(folder, "W")
    message = str(err.value)
    assert message.startswith(f"{name}: line {line}, column {column}: rule '{rule}' broken by ")
    assert "; accepted: " in message and "\n" not in message


def test_the_valid_league_passes_every_rule(folder):
    assert len(kaggle.read_league(folder, "W").regular) == 12


def test_a_violation_says_what_is_accepted_and_how_many_lines_break_it(folder):
    def swap_all(frame, row):
        frame[[names.WSCORE, names.LSCORE]] = frame[[names.LSCORE, names.WSCORE]].to_numpy()

    corrupt_file(folder, REGULAR, swap_all, row=0)
    with pytest.raises(UserError) as err:
        kaggle.read_league(folder, "W")
    assert str(err.value) == (
        f"{REGULAR}: line 2, column WScore: rule 'winner above loser' broken by WScore=53, LScore=63 "
        "(11 more lines like it); accepted: WScore above LScore (no ties; winner and loser not swapped)"
    )


def test_unknown_team_names_the_teams_file(folder):
    corrupt_file(folder, SEEDS, set_value(names.TEAM_ID, 999), row=2)
    with pytest.raises(UserError, match=rf"accepted: a TeamID listed in {TEAMS}$"):
        kaggle.read_league(folder, "W")


def test_a_score_beyond_int64_is_refused_as_not_an_integer(folder):
    corrupt_file(folder, REGULAR, set_value(names.WSCORE, "99999999999999999999"), row=2)
    with pytest.raises(
        UserError,
        match=rf"{REGULAR}: column 'WScore' must hold integers of at most 18 digits, found 99999999999999999999 at row 4",
    ):
        kaggle.read_league(folder, "W")


def box_scores(folder, corrupt):
    frame = detailed(season_frames(seasons=[2001, 2002])[names.REGULAR_COMPACT])
    corrupt(frame, 2)
    frame.to_csv(folder / f"W{names.REGULAR_DETAILED}.csv", index=False)


def test_box_score_made_above_attempted_is_refused(folder):
    box_scores(folder, set_value("WFGM", 10_000))
    with pytest.raises(
        UserError, match=r"line 4, column WFGM: rule 'made within attempted' .* accepted: WFGM at most WFGA"
    ):
        kaggle.read_league(folder, "W")


def test_negative_box_score_is_refused(folder):
    box_scores(folder, set_value("LBlk", -1))
    with pytest.raises(UserError, match=r"line 4, column LBlk: rule 'count range'"):
        kaggle.read_league(folder, "W")


def test_a_rule_that_cannot_run_is_a_bug_not_bad_data():
    broken = schemas.pa.DataFrameSchema(checks=[schemas.pa.Check(lambda frame: frame["absent"] > 0, name="broken")])
    with pytest.raises(schemas.pa.errors.SchemaError):
        schemas.validate(pd.DataFrame({"present": [1]}), broken, "f.csv")


@pytest.mark.slow
@pytest.mark.realdata
@pytest.mark.parametrize("case", list(CASES))
def test_a_corrupted_copy_of_the_real_women_files_is_refused_naming_its_rule(real_data, tmp_path, case):
    name, corrupt, rule, column = CASES[case]
    for file in (REGULAR, TOURNEY, SEEDS, TEAMS):
        shutil.copy(real_data / file, tmp_path)
    line = corrupt_file(tmp_path, name, corrupt, row=299)
    with pytest.raises(UserError) as err:
        kaggle.read_league(tmp_path, "W")
    assert str(err.value).startswith(f"{name}: line {line}, column {column}: rule '{rule}' broken by ")
