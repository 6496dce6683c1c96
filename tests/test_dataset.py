"""madness.dataset: season splits, the training-only scaler, the feature folder."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from leagues import league_files, season_frames
from madness import dataset, names
from madness.errors import UserError

SEASONS = dataset.Seasons(first=2001, val=2003, test=2005, last=2006)


def build(box=False, **frames_kwargs) -> dataset.Built:
    frames = season_frames(seasons=range(2000, 2008), **frames_kwargs)
    return dataset.build([league_files(frames, box=box)], SEASONS)


@pytest.fixture(scope="module")
def built() -> dataset.Built:
    return build()


@pytest.mark.parametrize(
    "first, val, test, last",
    [
        (2003, 2019, 2018, 2023),  # validation after test
        (2019, 2003, 2022, 2023),  # validation before training
        (2003, 2003, 2022, 2023),  # empty training span
        (2003, 2019, 2019, 2023),  # empty validation span
        (2003, 2019, 2025, 2023),  # test more than one season after last
    ],
)
def test_inverted_seasons_are_refused(first, val, test, last):
    with pytest.raises(UserError, match=r"first_season < val_season < test_season <= last_season \+ 1 .*, got"):
        dataset.Seasons(first, val, test, last).check()


def test_one_season_test_span_is_accepted():
    assert dataset.Seasons(2003, 2019, 2023, 2023).check() == dataset.Seasons(2003, 2019, 2023, 2023)


def test_test_season_after_the_last_means_no_test_seasons():
    seasons = dataset.Seasons(2003, 2023, 2024, 2023).check()
    assert not seasons.has_test and dataset.Seasons(2003, 2019, 2023, 2023).has_test


def test_without_test_seasons_every_season_with_results_is_trained_or_validated():
    frames = season_frames(seasons=range(2000, 2008))
    built = dataset.build([league_files(frames)], dataset.Seasons(2001, 2007, 2008, 2007))
    split_seasons = built.games.groupby(names.SPLIT)[names.SEASON].agg(["min", "max"])
    assert set(split_seasons.index) == {names.TRAIN, names.VAL}
    assert tuple(split_seasons.loc[names.TRAIN]) == (2001, 2006) and tuple(split_seasons.loc[names.VAL]) == (2007, 2007)


def test_build_checks_seasons():
    frames = season_frames(seasons=range(2000, 2008))
    with pytest.raises(UserError, match="first_season < val_season"):
        dataset.build([league_files(frames)], dataset.Seasons(2005, 2003, 2004, 2006))


def test_split_of_each_season():
    seasons = pd.Series(range(2000, 2008))
    assert SEASONS.split_of(seasons).tolist() == [pd.NA, "train", "train", "val", "val", "test", "test", pd.NA]


def test_a_season_is_in_one_split_only(built):
    per_season = built.games.groupby(names.SEASON)[names.SPLIT].unique()
    assert all(len(splits) == 1 for splits in per_season)
    splits = per_season.map(lambda s: s[0])
    assert splits.to_dict() == {2001: "train", 2002: "train", 2003: "val", 2004: "val", 2005: "test", 2006: "test"}


def test_seasons_outside_the_span_are_dropped(built):
    assert built.games[names.SEASON].between(2001, 2006).all()
    assert built.games[names.SPLIT].notna().all()


def test_each_game_gives_two_rows_with_both_targets(built):
    assert len(built.games) == 6 * 3 * 2
    assert built.games[names.TARGET].sum() == 6 * 3


def test_scaler_lists_the_features_of_both_teams(built):
    assert built.feature_names == [
        f"{side}{c}"
        for side in ("T1_", "T2_")
        for c in ("PointsFor", "PointsAgainst", "Margin", "WinRatio", "Elo", "SeedNum")
    ]
    assert len(built.scaler["mean"]) == len(built.scaler["scale"]) == len(built.feature_names)


def test_scaler_is_fit_on_training_rows(built):
    train = built.games[built.games[names.SPLIT] == names.TRAIN][built.feature_names].to_numpy(dtype="float64")
    scale = train.std(axis=0)
    scale[scale == 0] = 1.0
    assert built.scaler["mean"] == pytest.approx(train.mean(axis=0).tolist())
    assert built.scaler["scale"] == pytest.approx(scale.tolist())


def test_scaler_ignores_validation_and_test_seasons(built):
    changed = build(bump={2003: 9, 2004: 5, 2005: 7, 2006: 3})
    assert not changed.games[built.feature_names].equals(built.games[built.feature_names])  # the change shows
    assert changed.scaler == built.scaler


def test_scaler_follows_training_seasons(built):
    changed = build(bump={2001: 9})
    assert changed.scaler["mean"] != built.scaler["mean"]


def test_constant_feature_keeps_scale_one():
    train = pd.DataFrame({"a": [1.0, 1.0, 1.0], "b": [1.0, 2.0, 3.0]})
    scaler = dataset.fit_scaler(train, ["a", "b"])
    assert scaler["scale"][0] == 1.0 and scaler["scale"][1] == pytest.approx(np.std([1, 2, 3]))


@pytest.mark.parametrize("missing, split", [((2003, 2004), "val"), ((2001, 2002), "train"), ((2005, 2006), "test")])
def test_split_without_tournament_games_is_refused(missing, split):
    with pytest.raises(UserError, match=rf"no tournament games for the {split} seasons"):
        build(no_tourney=missing)


def test_season_without_tournament_inside_a_split_is_fine():
    assert 2004 not in set(build(no_tourney=(2004,)).games[names.SEASON])  # like 2020


def test_tournament_team_without_regular_season_is_refused():
    frames = season_frames(seasons=range(2000, 2008))
    regular = frames[names.REGULAR_COMPACT]
    frames[names.REGULAR_COMPACT] = regular[regular[names.SEASON] != 2005]
    with pytest.raises(UserError, match=r"tournament game in season 2005 .* has no regular-season features"):
        dataset.build([league_files(frames)], SEASONS)


def test_box_scores_are_used_when_every_league_has_them():
    frames = season_frames(seasons=range(2000, 2008))
    with_box = dataset.build([league_files(frames, box=True)], SEASONS)
    assert with_box.manifest["box_scores"] is True
    assert "T1_OppFGM" in with_box.feature_names and "T2_PF" in with_box.feature_names
    mixed = dataset.build([league_files(frames, "M", box=True), league_files(frames, "W", box=False)], SEASONS)
    assert mixed.manifest["box_scores"] is False
    assert not any("FGM" in f for f in mixed.feature_names)


def test_leagues_are_kept_apart():
    frames = season_frames(seasons=range(2000, 2008))
    both = dataset.build([league_files(frames, "M"), league_files(frames, "W")], SEASONS)
    assert both.games.groupby(names.LEAGUE).size().to_dict() == {"M": 36, "W": 36}
    assert set(both.team_season[names.LEAGUE]) == {"M", "W"}


def test_write_then_load_gives_the_same_tables(built, tmp_path):
    written = dataset.write(built, tmp_path / "features")
    assert sorted(p.name for p in written) == sorted(
        [names.GAMES_FILE, names.TEAM_SEASON_FILE, names.SCALER_FILE, names.MANIFEST_FILE]
    )
    loaded = dataset.load(tmp_path / "features")
    pd.testing.assert_frame_equal(loaded.games, built.games, check_dtype=False)
    pd.testing.assert_frame_equal(loaded.team_season, built.team_season, check_dtype=False)
    assert loaded.scaler == built.scaler
    assert loaded.manifest == built.manifest
    assert json.loads((tmp_path / "features" / names.SCALER_FILE).read_text())["features"] == built.feature_names


def test_write_keeps_floats_exact(tmp_path):
    with_box = build(box=True)
    dataset.write(with_box, tmp_path)
    loaded = dataset.load(tmp_path)
    assert np.array_equal(
        loaded.games[with_box.feature_names].to_numpy(), with_box.games[with_box.feature_names].to_numpy()
    )


def test_load_of_an_incomplete_folder_names_the_missing_files(built, tmp_path):
    dataset.write(built, tmp_path)
    (tmp_path / names.SCALER_FILE).unlink()
    with pytest.raises(UserError, match=rf"feature folder .* lacks {names.SCALER_FILE}"):
        dataset.load(tmp_path)


def test_read_inputs_names_a_file_given_as_data(tmp_path):
    data = tmp_path / "some.csv"
    data.write_text("TeamID,TeamName\n101,A\n")
    with pytest.raises(
        UserError, match=r"data '.*some\.csv' is a file, not a folder; give 'synthetic' or a folder of Kaggle CSVs"
    ):
        dataset.read_inputs(str(data), "W", 0, tmp_path / "raw")


def test_split_xy_gives_one_split(built):
    x, y = dataset.split_xy(built.games, built.feature_names, names.VAL)
    assert list(x.columns) == built.feature_names
    assert len(x) == len(y) == 2 * 3 * 2
    assert set(y) == {0.0, 1.0}
