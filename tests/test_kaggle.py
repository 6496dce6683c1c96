"""madness.kaggle: Kaggle file names, schema checks with one-line errors, encodings, manifest."""

from __future__ import annotations

import hashlib
import os
import tempfile
from contextlib import contextmanager

import pandas as pd
import pytest

from leagues import TEAMS, compact, detailed, season_frames, write_folder
from madness import kaggle, names
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
    assert files.regular[names.WTEAM].dtype == "int64"
    assert set(files.regular[names.WLOC]) <= {"H", "A", "N"}


def test_missing_column_names_file_and_column(folder):
    rewrite(folder, names.TEAMS, "TeamID,Name\n101,A\n")
    with pytest.raises(UserError, match=r"WTeams\.csv: missing column 'TeamName'"):
        kaggle.read_league(folder, "W")


def test_non_integer_value_names_file_column_and_row(folder):
    frame = season_frames(seasons=[2001])[names.REGULAR_COMPACT].astype(str)
    frame.loc[2, names.WSCORE] = "seventy"
    frame.to_csv(folder / "WRegularSeasonCompactResults.csv", index=False)
    with pytest.raises(UserError) as err:
        kaggle.read_league(folder, "W")
    message = str(err.value)
    assert "WRegularSeasonCompactResults.csv" in message and "'WScore'" in message
    assert "'seventy'" in message and "row 4" in message  # header is line 1, frame row 2 is line 4


@pytest.mark.parametrize("value", ["2.5", "", "inf", "1e400", "True"])
def test_values_that_are_not_integers_are_refused(value):
    frame = pd.DataFrame({names.SEASON: ["2001", value], names.TEAM_ID: ["1", "2"]})
    with pytest.raises(UserError, match=r"f\.csv: column 'Season' must hold integers"):
        kaggle.check_columns(frame, {names.SEASON: "int", names.TEAM_ID: "int"}, "f.csv")


def test_boolean_looking_column_is_not_read_as_integers(folder):
    rewrite(folder, names.TEAMS, "TeamID,TeamName\nTrue,A\nFalse,B\n")
    with pytest.raises(UserError, match=r"WTeams\.csv: column 'TeamID' must hold integers, found 'True'"):
        kaggle.read_league(folder, "W")


def test_rows_longer_than_the_header_are_refused(folder):
    # pandas would silently take the first column as an index and shift every value left
    rewrite(folder, names.TEAMS, "TeamID,TeamName\n101,A,x\n102,B,y\n")
    with pytest.raises(UserError, match=r"WTeams\.csv: .*more fields than the header"):
        kaggle.read_league(folder, "W")


def test_ragged_row_is_a_one_line_error(folder):
    rewrite(folder, names.TEAMS, "TeamID,TeamName\n101,A\n102,B,extra\n")
    with pytest.raises(UserError, match=r"WTeams\.csv: not a readable CSV file") as err:
        kaggle.read_league(folder, "W")
    assert "\n" not in str(err.value)


def test_empty_file_is_a_one_line_error(folder):
    rewrite(folder, names.TEAMS, "")
    with pytest.raises(UserError, match=r"WTeams\.csv: not a readable CSV file"):
        kaggle.read_league(folder, "W")


def test_bad_location_names_file_and_column(folder):
    games = compact([(2001, 10, 101, 70, 102, 60, "X")])
    games.to_csv(folder / "WRegularSeasonCompactResults.csv", index=False)
    with pytest.raises(
        UserError, match=r"WRegularSeasonCompactResults\.csv: column 'WLoc' must be one of H, A, N, found 'X'"
    ):
        kaggle.read_league(folder, "W")


@pytest.mark.parametrize("label", ["Q01", "W17", "W00", "W1", "W01c", "w01"])
def test_bad_seed_label_names_file_and_column(folder, label):
    rewrite(folder, names.TOURNEY_SEEDS, f"Season,Seed,TeamID\n2001,W01,101\n2001,{label},102\n")
    with pytest.raises(UserError, match=rf"WNCAATourneySeeds\.csv: column 'Seed' .*found '{label}' at row 3"):
        kaggle.read_league(folder, "W")


@pytest.mark.parametrize("label", ["W01", "X16", "Y11a", "Z16b"])
def test_kaggle_seed_labels_are_accepted(label):
    frame = pd.DataFrame({names.SEASON: [2001], names.SEED: [label], names.TEAM_ID: [101]})
    checked = kaggle.check_columns(frame, kaggle.SCHEMAS[names.TOURNEY_SEEDS].columns, "s.csv")
    assert checked[names.SEED].tolist() == [label]


def test_windows_1252_file_is_decoded(folder):
    rewrite(folder, names.TEAMS, "TeamID,TeamName\n101,Saint Mary’s\n102,Montréal\n103,C\n104,D\n", encoding="cp1252")
    raw = (folder / "WTeams.csv").read_bytes()
    with pytest.raises(UnicodeDecodeError):
        raw.decode("utf-8")  # the fixture really is not UTF-8
    teams = kaggle.read_league(folder, "W").teams
    assert teams[names.TEAM_NAME].tolist() == ["Saint Mary’s", "Montréal", "C", "D"]


def test_utf8_with_byte_order_mark_is_decoded(folder):
    rewrite(folder, names.TEAMS, "\ufeffTeamID,TeamName\n101,Montréal\n102,B\n103,C\n104,D\n")
    teams = kaggle.read_league(folder, "W").teams
    assert teams[names.TEAM_NAME].tolist() == ["Montréal", "B", "C", "D"]


def test_byte_invalid_in_utf8_and_windows_1252_names_offset_and_line(folder):
    # 0x81 is undefined in Windows-1252 and cannot start a UTF-8 character
    path = rewrite(folder, names.TEAMS, "TeamID,TeamName\n101,A\n")
    path.write_bytes(path.read_bytes() + b"102,B\x81\n")
    with pytest.raises(UserError) as err:
        kaggle.read_league(folder, "W")
    assert str(err.value) == (
        "WTeams.csv: cannot decode byte 0x81 at offset 27 (line 3): it is neither UTF-8 nor Windows-1252; "
        "files must be UTF-8 or Windows-1252"
    )


def test_stray_byte_in_a_utf8_file_is_named_where_utf8_fails(folder):
    # \u0101 is C4 81 in UTF-8: Windows-1252 fails on its 0x81, which is not the culprit; 0xFF is
    path = rewrite(folder, names.TEAMS, "TeamID,TeamName\n101,\u0101\n")
    path.write_bytes(path.read_bytes() + b"102,\xff\n")
    with pytest.raises(
        UserError, match=r"byte 0x81 at offset 21 \(line 2\) \(as UTF-8: byte 0xFF at offset 27 \(line 3\)\)"
    ):
        kaggle.read_league(folder, "W")


@pytest.mark.parametrize(
    "encoding, named",
    [
        ("utf-16", "UTF-16"),
        ("utf-16-le", "UTF-16"),
        ("utf-16-be", "UTF-16"),
        ("utf-32", "UTF-32"),
    ],
)
def test_wide_unicode_file_is_named_by_its_encoding(folder, encoding, named):
    rewrite(folder, names.TEAMS, "TeamID,TeamName\n101,Montréal\n", encoding=encoding)
    with pytest.raises(
        UserError, match=rf"WTeams\.csv: the file is {named}; files must be UTF-8 or Windows-1252: save it as UTF-8"
    ):
        kaggle.read_league(folder, "W")


def test_nul_byte_is_refused_as_not_text(folder):
    path = rewrite(folder, names.TEAMS, "TeamID,TeamName\n101,A\n102,B\n")
    path.write_bytes(path.read_bytes().replace(b"B", b"\x00"))
    with pytest.raises(UserError, match=r"WTeams\.csv: NUL byte at offset 26 \(line 3\): not a text CSV file"):
        kaggle.read_league(folder, "W")


def repeat_first_row(folder, stem):
    path = folder / kaggle.file_name("W", stem)
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines + lines[1:2]) + "\n")
    return len(lines) + 1  # the file line of the copy


@pytest.mark.parametrize("stem", list(kaggle.SCHEMAS))
def test_a_repeated_row_is_refused_in_every_kaggle_file(folder, stem):
    detailed(season_frames(seasons=[2001, 2002])[names.REGULAR_COMPACT]).to_csv(
        folder / kaggle.file_name("W", names.REGULAR_DETAILED), index=False
    )
    line = repeat_first_row(folder, stem)
    with pytest.raises(UserError, match=rf"W{stem}\.csv: 1 duplicated key .* on lines 2 and {line};"):
        kaggle.read_league(folder, "W")


def test_doubled_tournament_names_key_columns_example_and_count(folder):
    path = folder / "WNCAATourneyCompactResults.csv"
    header, body = path.read_text().split("\n", 1)
    path.write_text(header + "\n" + body + body)
    with pytest.raises(UserError) as err:
        kaggle.read_league(folder, "W")
    assert str(err.value) == (
        "WNCAATourneyCompactResults.csv: 6 duplicated keys (Season, DayNum, WTeamID, LTeamID), "
        "e.g. Season=2001, DayNum=136, WTeamID=101, LTeamID=104 on lines 2 and 8; "
        "each (Season, DayNum, WTeamID, LTeamID) must appear on one row only"
    )


def test_team_seeded_twice_in_a_season_is_refused(folder):
    rewrite(folder, names.TOURNEY_SEEDS, "Season,Seed,TeamID\n2001,W01,101\n2001,X02,102\n2001,Y03,101\n")
    with pytest.raises(
        UserError,
        match=r"WNCAATourneySeeds\.csv: 1 duplicated key \(Season, TeamID\), e\.g\. Season=2001, TeamID=101 on lines 2 and 4",
    ):
        kaggle.read_league(folder, "W")


def test_seed_given_to_two_teams_in_a_season_is_refused(folder):
    rewrite(folder, names.TOURNEY_SEEDS, "Season,Seed,TeamID\n2001,W01,101\n2001,W01,102\n2002,W01,101\n")
    with pytest.raises(
        UserError,
        match=r"WNCAATourneySeeds\.csv: 1 duplicated key \(Season, Seed\), e\.g\. Season=2001, Seed=W01 on lines 2 and 3",
    ):
        kaggle.read_league(folder, "W")


def test_keys_are_compared_as_typed_values(folder):
    rewrite(folder, names.TEAMS, "TeamID,TeamName\n101,A\n101.0,B\n")
    with pytest.raises(
        UserError, match=r"WTeams\.csv: 1 duplicated key TeamID, e\.g\. TeamID=101 on lines 2 and 3; each TeamID"
    ):
        kaggle.read_league(folder, "W")


def test_team_playing_twice_on_one_day_is_accepted(folder):
    # Kaggle's women's regular season has such days: a game is known by both teams, not one
    games = compact(
        [(2001, 10, 101, 70, 102, 60, "H"), (2001, 10, 101, 71, 103, 61, "H"), (2001, 10, 104, 72, 102, 62, "A")]
    )
    games.to_csv(folder / "WRegularSeasonCompactResults.csv", index=False)
    assert len(kaggle.read_league(folder, "W").regular) == 3


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


def test_data_given_as_a_file_is_named_a_file(folder):
    with pytest.raises(
        UserError, match=r"data '.*WTeams\.csv' is a file, not a folder; give 'synthetic' or a folder of Kaggle CSVs"
    ):
        kaggle.read_league(folder / "WTeams.csv", "W")


def test_kaggle_file_that_is_a_folder_is_named_a_folder(folder):
    (folder / "WTeams.csv").unlink()
    (folder / "WTeams.csv").mkdir()
    with pytest.raises(UserError, match=r"WTeams\.csv in .* is a folder, not a file"):
        kaggle.read_league(folder, "W")


def test_optional_file_that_is_a_folder_is_refused(folder):
    (folder / "WRegularSeasonDetailedResults.csv").mkdir()
    with pytest.raises(UserError, match=r"WRegularSeasonDetailedResults\.csv in .* is a folder, not a file"):
        kaggle.read_league(folder, "W")


def test_kaggle_file_that_is_a_broken_link_names_its_target(folder):
    (folder / "WTeams.csv").unlink()
    (folder / "WTeams.csv").symlink_to("elsewhere/WTeams.csv")
    with pytest.raises(
        UserError, match=r"WTeams\.csv in .* is a link to 'elsewhere/WTeams\.csv', which does not exist"
    ):
        kaggle.read_league(folder, "W")


@contextmanager
def as_nobody():
    """Root reads any file: drop the effective user for the block so permissions apply."""
    if os.geteuid() != 0:
        yield
        return
    os.seteuid(65534)
    try:
        yield
    finally:
        os.seteuid(0)


def test_unreadable_file_is_one_line_naming_it():
    with tempfile.TemporaryDirectory() as tmp:  # not under pytest's root-only folder: only the mode must stop the read
        os.chmod(tmp, 0o755)
        path = write_folder(tmp, season_frames(seasons=[2001])) / "WTeams.csv"
        with as_nobody():
            path.read_bytes()  # readable before the chmod: the mode alone is the cause below
        path.chmod(0)
        with as_nobody(), pytest.raises(UserError) as err:
            kaggle.read_checked(path, kaggle.SCHEMAS[names.TEAMS].columns)
    assert str(err.value) == f"WTeams.csv: cannot read {path} (Permission denied); files must be readable CSV files"


def test_other_league_files_are_not_read(folder):
    with pytest.raises(UserError, match=r"missing file MRegularSeasonCompactResults\.csv"):
        kaggle.read_league(folder, "M")


def test_absent_detailed_file_gives_none(folder):
    assert kaggle.read_league(folder, "W").detailed is None


def test_present_detailed_file_is_read_and_checked(folder):
    games = season_frames(seasons=[2001])[names.REGULAR_COMPACT]
    detailed(games).to_csv(folder / "WRegularSeasonDetailedResults.csv", index=False)
    files = kaggle.read_league(folder, "W")
    assert files.detailed is not None and len(files.detailed) == len(games)
    assert files.detailed["WFGM"].dtype == "int64"


def test_present_detailed_file_with_missing_column_is_refused(folder):
    games = season_frames(seasons=[2001])[names.REGULAR_COMPACT]
    detailed(games).drop(columns="LBlk").to_csv(folder / "WRegularSeasonDetailedResults.csv", index=False)
    with pytest.raises(UserError, match=r"WRegularSeasonDetailedResults\.csv: missing column 'LBlk'"):
        kaggle.read_league(folder, "W")


def test_extra_columns_are_kept_out_of_the_way(folder):
    rewrite(
        folder,
        names.TEAMS,
        "TeamID,TeamName,FirstD1Season,LastD1Season\n" + "".join(f"{t},{t},1985,2025\n" for t in TEAMS),
    )
    assert kaggle.read_league(folder, "W").teams[names.TEAM_NAME].tolist() == [str(t) for t in TEAMS]


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
    assert set(by_file) == {
        "WRegularSeasonCompactResults.csv",
        "WNCAATourneyCompactResults.csv",
        "WNCAATourneySeeds.csv",
        "WTeams.csv",
    }
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
    assert files.seeds[names.SEASON].max() == 2024
    assert files.tourney[names.SEASON].max() == 2023


@pytest.mark.realdata
def test_real_files_have_no_duplicated_keys(real_data):
    # the men's regular season is not in this copy, so each present file is read on its own
    read = []
    for league in names.LEAGUES:
        for stem, schema in kaggle.SCHEMAS.items():
            path = real_data / kaggle.file_name(league, stem)
            if path.is_file():
                frame, _ = kaggle.read_checked(path, schema.columns, schema.keys)
                read.append((path.name, len(frame)))
    assert len(read) >= 7 and all(rows > 0 for _, rows in read)
