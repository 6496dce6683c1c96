"""madness.features on games small enough to work out by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from leagues import compact
from madness import features, names
from madness.errors import UserError

A, B, C = 101, 102, 103


@pytest.fixture
def games():
    """Two games in 2001 (listed out of day order) and one in 2002."""
    return compact(
        [
            (2001, 11, C, 75, A, 65, "A"),  # C wins away at A, the day after A's home win
            (2001, 10, A, 70, B, 60, "H"),  # A wins at home
            (2002, 10, B, 80, C, 70, "N"),  # B wins on neutral ground
        ]
    )


@pytest.fixture
def seeds():
    return pd.DataFrame(
        {
            names.SEASON: [2001, 2001, 2001, 2002, 2002],
            names.SEED: ["W01", "X16a", "Y02", "W03", "Z16b"],
            names.TEAM_ID: [A, B, C, B, A],
        }
    )


def elo_of(ratings: pd.DataFrame) -> dict:
    return {(s, t): e for s, t, e in ratings[[names.SEASON, names.TEAM_ID, names.ELO]].itertuples(index=False)}


def test_elo_by_hand(games):
    ratings = elo_of(features.elo_ratings(games))
    # Day 10, A beats B at home: K 20, both at 1500, E = 0.5 -> A +10, B -10.
    # Day 11, C beats A away: K 40, E_C = 1 / (1 + 10 ** ((1510 - 1500) / 400)) = 0.4856128
    #   -> C and A move by 40 * (1 - 0.4856128) = 20.575487.
    assert ratings[(2001, B)] == pytest.approx(1490.0)
    assert ratings[(2001, A)] == pytest.approx(1510.0 - 20.575487, abs=1e-6)
    assert ratings[(2001, C)] == pytest.approx(1500.0 + 20.575487, abs=1e-6)
    # 2002 starts over at 1500: B beats C on neutral ground, K 30, E = 0.5 -> +-15.
    assert ratings[(2002, B)] == pytest.approx(1515.0)
    assert ratings[(2002, C)] == pytest.approx(1485.0)


def test_elo_has_rows_only_for_teams_that_played(games):
    ratings = features.elo_ratings(games)
    assert sorted(ratings[ratings[names.SEASON] == 2002][names.TEAM_ID]) == [B, C]
    assert len(ratings) == 5


@pytest.mark.parametrize("location, k", [("H", 20.0), ("N", 30.0), ("A", 40.0)])
def test_elo_k_follows_the_winners_location(location, k):
    ratings = elo_of(features.elo_ratings(compact([(2001, 10, A, 70, B, 60, location)])))
    assert ratings[(2001, A)] == pytest.approx(1500.0 + k / 2)
    assert ratings[(2001, B)] == pytest.approx(1500.0 - k / 2)


def test_elo_conserves_total_rating(games):
    ratings = features.elo_ratings(games)
    assert ratings.groupby(names.SEASON)[names.ELO].sum().tolist() == pytest.approx([3 * 1500.0, 2 * 1500.0])


def test_team_season_means(games, seeds):
    table = features.team_season_features(games, seeds).set_index([names.SEASON, names.TEAM_ID])
    a, b, c = table.loc[(2001, A)], table.loc[(2001, B)], table.loc[(2001, C)]
    assert (a[names.POINTS_FOR], a[names.POINTS_AGAINST], a[names.MARGIN], a[names.WIN_RATIO]) == (67.5, 67.5, 0.0, 0.5)
    assert (b[names.POINTS_FOR], b[names.POINTS_AGAINST], b[names.MARGIN], b[names.WIN_RATIO]) == (
        60.0,
        70.0,
        -10.0,
        0.0,
    )
    assert (c[names.POINTS_FOR], c[names.POINTS_AGAINST], c[names.MARGIN], c[names.WIN_RATIO]) == (
        75.0,
        65.0,
        10.0,
        1.0,
    )


def test_team_season_carries_elo_and_seed_number(games, seeds):
    table = features.team_season_features(games, seeds).set_index([names.SEASON, names.TEAM_ID])
    assert table.loc[(2001, B), names.ELO] == pytest.approx(1490.0)
    assert table.loc[(2001, A), names.SEED_NUM] == 1
    assert table.loc[(2001, B), names.SEED_NUM] == 16
    assert table.loc[(2002, B), names.SEED_NUM] == 3


def test_unseeded_team_has_no_seed_number(games, seeds):
    table = features.team_season_features(games, seeds).set_index([names.SEASON, names.TEAM_ID])
    assert np.isnan(table.loc[(2002, C), names.SEED_NUM])


def test_seeded_team_without_games_still_has_a_row(games, seeds):
    table = features.team_season_features(games, seeds).set_index([names.SEASON, names.TEAM_ID])
    assert table.loc[(2002, A), names.SEED_NUM] == 16
    assert np.isnan(table.loc[(2002, A), names.WIN_RATIO])


def test_one_row_per_season_and_team_in_order(games, seeds):
    table = features.team_season_features(games, seeds)
    assert list(zip(table[names.SEASON], table[names.TEAM_ID], strict=True)) == [
        (2001, A),
        (2001, B),
        (2001, C),
        (2002, A),
        (2002, B),
        (2002, C),
    ]


def test_no_box_score_columns_without_detailed_results(games, seeds):
    table = features.team_season_features(games, seeds)
    assert [c for c in table.columns if c not in (names.SEASON, names.TEAM_ID)] == list(features.COMPACT_FEATURES)


def test_box_score_means_for_team_and_opponents(games, seeds):
    box = games.copy()
    for stat in names.BOX_STATS:
        box[f"W{stat}"] = [30, 20, 25]  # C at A, A vs B, B vs C (row order of `games`)
        box[f"L{stat}"] = [10, 12, 14]
    box["WFGM"] = [31, 21, 26]
    table = features.team_season_features(games, seeds, detailed=box).set_index([names.SEASON, names.TEAM_ID])
    assert set(features.box_feature_names()) <= set(table.columns)
    assert len(features.box_feature_names()) == 18
    # A, 2001: won vs B (A's FGM 21, B's 12) and lost to C (A's FGM 10, C's 31).
    assert table.loc[(2001, A), "FGM"] == pytest.approx((21 + 10) / 2)
    assert table.loc[(2001, A), "OppFGM"] == pytest.approx((12 + 31) / 2)
    # C, 2001: one win at A.
    assert table.loc[(2001, C), "FGA"] == 30
    assert table.loc[(2001, C), "OppFGA"] == 10
    assert table.loc[(2002, C), "PF"] == 14 and table.loc[(2002, C), "OppPF"] == 25


def test_seed_number_drops_region_and_play_in_suffix():
    labels = pd.Series(["W16a", "X01", "Y11b", "Z09"])
    assert features.seed_number(labels).tolist() == [16, 1, 11, 9]
    assert features.seed_number(pd.Series(["W16a"]))[0] == 16


@pytest.fixture
def tournament(games, seeds):
    team = features.team_season_features(games, seeds)
    tourney = compact([(2001, 136, A, 66, C, 64, "N"), (2001, 138, C, 70, B, 50, "N")])
    return features.tournament_rows(tourney, team), team


def test_tournament_rows_two_per_game_with_both_targets(tournament):
    rows, _ = tournament
    assert len(rows) == 4
    pairs = {
        (t1, t2): won for t1, t2, won in rows[[names.T1_TEAM, names.T2_TEAM, names.TARGET]].itertuples(index=False)
    }
    assert pairs == {(A, C): 1, (C, A): 0, (C, B): 1, (B, C): 0}


def test_tournament_rows_swap_team_features(tournament):
    rows, team = tournament
    columns = features.team_feature_columns(team)
    assert features.feature_columns(columns) == [f"T1_{c}" for c in columns] + [f"T2_{c}" for c in columns]
    by_pair = rows.set_index([names.T1_TEAM, names.T2_TEAM])
    for c in columns:
        assert by_pair.loc[(A, C), f"T1_{c}"] == by_pair.loc[(C, A), f"T2_{c}"]
        assert by_pair.loc[(A, C), f"T2_{c}"] == by_pair.loc[(C, A), f"T1_{c}"]
    assert by_pair.loc[(A, C), "T1_SeedNum"] == 1 and by_pair.loc[(A, C), "T2_SeedNum"] == 2
    assert by_pair.loc[(C, B), "T1_Elo"] == pytest.approx(1520.575487, abs=1e-6)


def test_seeded_pairs_lower_id_first_and_all_pairs():
    seeds = pd.DataFrame(
        {names.SEASON: [2001] * 5 + [2002], names.SEED: ["W01"] * 6, names.TEAM_ID: [305, 101, 204, 150, 999, 7]}
    )
    pairs = features.seeded_pairs(seeds, 2001)
    assert len(pairs) == 5 * 4 // 2
    assert (pairs[names.T1_TEAM] < pairs[names.T2_TEAM]).all()
    assert not pairs.duplicated([names.T1_TEAM, names.T2_TEAM]).any()
    assert set(pairs[names.T1_TEAM]) | set(pairs[names.T2_TEAM]) == {101, 150, 204, 305, 999}
    assert (pairs[names.SEASON] == 2001).all()


def test_seeded_pairs_for_a_season_without_seeds_is_refused():
    seeds = pd.DataFrame({names.SEASON: [2001, 2001], names.SEED: ["W01", "W02"], names.TEAM_ID: [1, 2]})
    with pytest.raises(UserError, match=r"season 2030 has no tournament seeds; seeded seasons: 2001-2001"):
        features.seeded_pairs(seeds, 2030)
