"""madness.synthetic: a reproducible league in Kaggle's format, that Kaggle's reader accepts."""

from __future__ import annotations

import hashlib

import pytest

import madness.names
from madness import kaggle, synthetic

LEAGUES = ("M", "W")


def hashes(folder) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    out = tmp_path_factory.mktemp("synthetic42")
    synthetic.write_league(out, 42)
    return out


@pytest.fixture(scope="module")
def league(folder):
    return {lg: kaggle.read_league(folder, lg) for lg in LEAGUES}


def test_writes_every_kaggle_file_of_both_leagues(folder):
    expected = {kaggle.file_name(lg, stem) for lg in LEAGUES for stem in kaggle.SCHEMAS}
    assert {p.name for p in folder.iterdir()} == expected


def test_same_seed_gives_the_same_bytes(folder, tmp_path):
    synthetic.write_league(tmp_path, 42)
    assert hashes(tmp_path) == hashes(folder)


def test_a_league_does_not_depend_on_the_other_being_written(folder, tmp_path):
    synthetic.write_league(tmp_path, 42, ("W",))
    assert hashes(tmp_path) == {name: h for name, h in hashes(folder).items() if name.startswith("W")}


def test_other_seed_gives_other_games(folder, tmp_path):
    synthetic.write_league(tmp_path, 43, ("W",))
    other, same = hashes(tmp_path), hashes(folder)
    for stem in (
        madness.names.REGULAR_COMPACT,
        madness.names.REGULAR_DETAILED,
        madness.names.TOURNEY_COMPACT,
        madness.names.TOURNEY_SEEDS,
    ):
        name = kaggle.file_name("W", stem)
        assert other[name] != same[name], name


def test_every_file_passes_the_kaggle_reader(league):
    for _lg, files in league.items():
        assert files.detailed is not None
        assert len(files.manifest) == len(kaggle.SCHEMAS)
        assert all(entry["rows"] > 0 for entry in files.manifest)


@pytest.mark.parametrize("lg", LEAGUES)
def test_67_tournament_games_each_season(league, lg):
    per_season = league[lg].tourney.groupby(madness.names.SEASON).size()
    assert per_season.index.tolist() == list(range(synthetic.FIRST_SEASON, synthetic.LAST_SEASON))
    assert (per_season == 67).all()


@pytest.mark.parametrize("lg", LEAGUES)
def test_68_distinct_seeded_teams_each_season(league, lg):
    seeds = league[lg].seeds
    per_season = seeds.groupby(madness.names.SEASON)[madness.names.TEAM_ID].nunique()
    assert per_season.index.tolist() == list(range(synthetic.FIRST_SEASON, synthetic.LAST_SEASON + 1))
    assert (per_season == 68).all()
    assert (seeds.groupby(madness.names.SEASON)[madness.names.SEED].nunique() == 68).all()


@pytest.mark.parametrize("lg", LEAGUES)
def test_last_season_has_seeds_and_games_but_no_tournament(league, lg):
    files = league[lg]
    last = files.regular[madness.names.SEASON].max()  # the season to predict, as Kaggle's files before a tournament
    assert last == files.seeds[madness.names.SEASON].max() == files.tourney[madness.names.SEASON].max() + 1
    assert (files.seeds[madness.names.SEASON] == last).sum() == 68
    assert not (files.tourney[madness.names.SEASON] == last).any()


@pytest.mark.parametrize("lg", LEAGUES)
def test_only_seeded_teams_play_the_tournament(league, lg):
    files = league[lg]
    seeded = set(zip(files.seeds[madness.names.SEASON], files.seeds[madness.names.TEAM_ID], strict=True))
    for side in (madness.names.WTEAM, madness.names.LTEAM):
        assert set(zip(files.tourney[madness.names.SEASON], files.tourney[side], strict=True)) <= seeded
    assert (files.tourney[madness.names.WLOC] == "N").all()


@pytest.mark.parametrize("lg", LEAGUES)
def test_team_names_say_synthetic(league, lg):
    names = league[lg].teams[madness.names.TEAM_NAME]
    assert len(names) == synthetic.N_TEAMS
    assert names.str.startswith("Synthetic").all()


@pytest.mark.parametrize("lg", LEAGUES)
def test_winners_outscore_losers(league, lg):
    for frame in (league[lg].regular, league[lg].tourney):
        assert (frame[madness.names.WSCORE] > frame[madness.names.LSCORE]).all()
        assert (frame[madness.names.WTEAM] != frame[madness.names.LTEAM]).all()


@pytest.mark.parametrize("lg", LEAGUES)
def test_box_scores_add_up_to_the_score(league, lg):
    box = league[lg].detailed
    for side in ("W", "L"):
        assert (2 * box[f"{side}FGM"] + box[f"{side}FGM3"] + box[f"{side}FTM"] == box[f"{side}Score"]).all()
        assert (box[f"{side}FGM"] <= box[f"{side}FGA"]).all()
        assert (box[f"{side}FGM3"] <= box[f"{side}FGA3"]).all()
        assert (box[f"{side}FGM3"] <= box[f"{side}FGM"]).all()
        assert (box[f"{side}FTM"] <= box[f"{side}FTA"]).all()
        assert (box[[f"{side}{stat}" for stat in madness.names.BOX_STATS]] >= 0).all().all()


@pytest.mark.parametrize("lg", LEAGUES)
def test_detailed_results_are_the_compact_games(league, lg):
    files = league[lg]
    columns = list(files.regular.columns)
    assert files.detailed[columns].equals(files.regular)
