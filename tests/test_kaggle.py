"""madness.kaggle: Kaggle file names, schema checks with one-line errors, encodings, manifest."""

from __future__ import annotations

import hashlib

import pandas as pd
import pytest

from leagues import compact, detailed, season_frames, write_folder
from madness import kaggle
from madness import names as n
from madness.errors import UserError


@pytest.fixture
def folder(tmp_path):
    """A valid tiny women's league folder (compact files only)."""
    return write_folder(tmp_path / "data", season_frames(seasons=[2001, 2002]))


def rewrite(folder, stem, text, league="W", encoding="utf-8"):
    path = folder / kaggle.file_name(league, stem)
    path.write_bytes(text.encode(encoding))
    return path


def test_reads_a_valid_folder(folder):
    files = kaggle.read_league(folder, "W")
    assert files.league == "W"
    assert len(files.regular) == 12 and len(files.tourney) == 6 and len(files.seeds) == 8
    assert files.regular[n.WTEAM].dtype == "int64"
    assert set(files.regular[n.WLOC]) <= {"H", "A", "N"}


def test_missing_column_names_file_and_column(folder):
    rewrite(folder, n.TEAMS, "TeamID,Name\n101,A\n")
    with pytest.raises(UserError, match=r"WTeams\.csv: missing column 'TeamName'"):
        kaggle.read_league(folder, "W")


def test_non_integer_value_names_file_column_and_row(folder):
    frame = season_frames(seasons=[2001])[n.REGULAR_COMPACT].astype(str)
    frame.loc[2, n.WSCORE] = "seventy"
    frame.to_csv(folder / "WRegularSeasonCompactResults.csv", index=False)
    with pytest.raises(UserError) as err:
        kaggle.read_league(folder, "W")
    message = str(err.value)
    assert "WRegularSeasonCompactResults.csv" in message and "'WScore'" in message
    assert "'seventy'" in message and "row 4" in message  # header is line 1, frame row 2 is line 4


@pytest.mark.parametrize("value", ["2.5", "", "inf", "1e400", "True"])
def test_values_that_are_not_integers_are_refused(value):
    frame = pd.DataFrame({n.SEASON: ["2001", value], n.TEAM_ID: ["1", "2"]})
    with pytest.raises(UserError, match=r"f\.csv: column 'Season' must hold integers"):
        kaggle.check_columns(frame, {n.SEASON: "int", n.TEAM_ID: "int"}, "f.csv")


def test_boolean_looking_column_is_not_read_as_integers(folder):
    rewrite(folder, n.TEAMS, "TeamID,TeamName\nTrue,A\nFalse,B\n")
    with pytest.raises(UserError, match=r"WTeams\.csv: column 'TeamID' must hold integers, found 'True'"):
        kaggle.read_league(folder, "W")


def test_rows_longer_than_the_header_are_refused(folder):
    # pandas would silently take the first column as an index and shift every value left
    rewrite(folder, n.TEAMS, "TeamID,TeamName\n101,A,x\n102,B,y\n")
    with pytest.raises(UserError, match=r"WTeams\.csv: .*more fields than the header"):
        kaggle.read_league(folder, "W")


def test_ragged_row_is_a_one_line_error(folder):
    rewrite(folder, n.TEAMS, "TeamID,TeamName\n101,A\n102,B,extra\n")
    with pytest.raises(UserError, match=r"WTeams\.csv: not a readable CSV file") as err:
        kaggle.read_league(folder, "W")
    assert "\n" not in str(err.value)


def test_empty_file_is_a_one_line_error(folder):
    rewrite(folder, n.TEAMS, "")
    with pytest.raises(UserError, match=r"WTeams\.csv: not a readable CSV file"):
        kaggle.read_league(folder, "W")


def test_bad_location_names_file_and_column(folder):
    games = compact([(2001, 10, 101, 70, 102, 60, "X")])
    games.to_csv(folder / "WRegularSeasonCompactResults.csv", index=False)
    with pytest.raises(UserError, match=r"WRegularSeasonCompactResults\.csv: column 'WLoc' must be one of H, A, N, found 'X'"):
        kaggle.read_league(folder, "W")


@pytest.mark.parametrize("label", ["Q01", "W17", "W00", "W1", "W01c", "w01"])
def test_bad_seed_label_names_file_and_column(folder, label):
    rewrite(folder, n.TOURNEY_SEEDS, f"Season,Seed,TeamID\n2001,W01,101\n2001,{label},102\n")
    with pytest.raises(UserError, match=rf"WNCAATourneySeeds\.csv: column 'Seed' .*found '{label}' at row 3"):
        kaggle.read_league(folder, "W")


@pytest.mark.parametrize("label", ["W01", "X16", "Y11a", "Z16b"])
def test_kaggle_seed_labels_are_accepted(label):
    frame = pd.DataFrame({n.SEASON: [2001], n.SEED: [label], n.TEAM_ID: [101]})
    checked = kaggle.check_columns(frame, kaggle.SCHEMAS[n.TOURNEY_SEEDS][1], "s.csv")
    assert checked[n.SEED].tolist() == [label]


def test_windows_1252_file_is_decoded(folder):
    rewrite(folder, n.TEAMS, "TeamID,TeamName\n101,Saint Mary’s\n102,Montréal\n", encoding="cp1252")
    raw = (folder / "WTeams.csv").read_bytes()
    with pytest.raises(UnicodeDecodeError):
        raw.decode("utf-8")  # the fixture really is not UTF-8
    teams = kaggle.read_league(folder, "W").teams
    assert teams[n.TEAM_NAME].tolist() == ["Saint Mary’s", "Montréal"]


def test_utf8_with_byte_order_mark_is_decoded(folder):
    rewrite(folder, n.TEAMS, "\ufeffTeamID,TeamName\n101,Montréal\n")
    teams = kaggle.read_league(folder, "W").teams
    assert teams[n.TEAM_NAME].tolist() == ["Montréal"]


def test_missing_required_file_names_it_and_the_download_command(folder):
    (folder / "WNCAATourneySeeds.csv").unlink()
    with pytest.raises(UserError) as err:
        kaggle.read_league(folder, "W")
    message = str(err.value)
    assert "missing file WNCAATourneySeeds.csv" in message
    assert "kaggle competitions download -c march-machine-learning-mania-2024" in message


def test_missing_folder_is_named(tmp_path):
    with pytest.raises(UserError, match=r"data folder '.*nowhere' does not exist"):
        kaggle.read_league(tmp_path / "nowhere", "W")


def test_other_league_files_are_not_read(folder):
    with pytest.raises(UserError, match=r"missing file MRegularSeasonCompactResults\.csv"):
        kaggle.read_league(folder, "M")


def test_absent_detailed_file_gives_none(folder):
    assert kaggle.read_league(folder, "W").detailed is None


def test_present_detailed_file_is_read_and_checked(folder):
    games = season_frames(seasons=[2001])[n.REGULAR_COMPACT]
    detailed(games).to_csv(folder / "WRegularSeasonDetailedResults.csv", index=False)
    files = kaggle.read_league(folder, "W")
    assert files.detailed is not None and len(files.detailed) == len(games)
    assert files.detailed["WFGM"].dtype == "int64"


def test_present_detailed_file_with_missing_column_is_refused(folder):
    games = season_frames(seasons=[2001])[n.REGULAR_COMPACT]
    detailed(games).drop(columns="LBlk").to_csv(folder / "WRegularSeasonDetailedResults.csv", index=False)
    with pytest.raises(UserError, match=r"WRegularSeasonDetailedResults\.csv: missing column 'LBlk'"):
        kaggle.read_league(folder, "W")


def test_extra_columns_are_kept_out_of_the_way(folder):
    rewrite(folder, n.TEAMS, "TeamID,TeamName,FirstD1Season,LastD1Season\n101,A,1985,2025\n")
    assert kaggle.read_league(folder, "W").teams[n.TEAM_NAME].tolist() == ["A"]


@pytest.mark.parametrize("choice, leagues", [("M", ("M",)), ("W", ("W",)), ("both", ("M", "W"))])
def test_league_choices(choice, leagues):
    assert kaggle.leagues_for(choice) == leagues


@pytest.mark.parametrize("choice", ["X", "m", "", "MW"])
def test_unknown_league_is_refused(choice):
    with pytest.raises(UserError, match=rf"unknown league '{choice}'; accepted: M, W, both"):
        kaggle.leagues_for(choice)


def test_manifest_has_sha256_and_row_count_of_each_file_read(folder):
    files = kaggle.read_league(folder, "W")
    by_file = {entry["file"]: entry for entry in files.manifest}
    assert set(by_file) == {"WRegularSeasonCompactResults.csv", "WNCAATourneyCompactResults.csv",
                            "WNCAATourneySeeds.csv", "WTeams.csv"}
    for name, entry in by_file.items():
        raw = (folder / name).read_bytes()
        assert entry["sha256"] == hashlib.sha256(raw).hexdigest()
        assert entry["rows"] == len(raw.decode().strip().splitlines()) - 1


def test_manifest_digest_ignores_order_and_follows_content():
    a = {"file": "a.csv", "sha256": "1" * 64, "rows": 1}
    b = {"file": "b.csv", "sha256": "2" * 64, "rows": 2}
    assert kaggle.manifest_digest([a, b]) == kaggle.manifest_digest([b, a])
    assert kaggle.manifest_digest([a, b]) != kaggle.manifest_digest([a, {**b, "sha256": "3" * 64}])


@pytest.mark.realdata
def test_real_women_files_pass_the_reader(real_data):
    files = kaggle.read_league(real_data, "W")
    assert files.detailed is None  # this copy has no WRegularSeasonDetailedResults.csv
    assert files.seeds[n.SEASON].max() == 2024
    assert files.tourney[n.SEASON].max() == 2023
