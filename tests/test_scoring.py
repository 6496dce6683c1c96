"""madness.scoring: the scores on tiny hand-computed arrays, the seed baseline, reliability bins (against sklearn's)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from madness import names, scoring


def test_brier_is_mean_squared_error_of_probabilities():
    # (0.2^2 + 0.4^2 + 0.5^2) / 3 = (0.04 + 0.16 + 0.25) / 3
    assert scoring.brier([1, 0, 1], [0.8, 0.4, 0.5]) == pytest.approx(0.15, abs=1e-15)


def test_brier_is_zero_for_certain_right_answers_and_one_for_certain_wrong_ones():
    assert scoring.brier([1, 0], [1.0, 0.0]) == 0.0
    assert scoring.brier([1, 0], [0.0, 1.0]) == 1.0


def test_log_loss_by_hand():
    expected = -(math.log(0.8) + math.log(1 - 0.4)) / 2
    assert scoring.log_loss([1, 0], [0.8, 0.4]) == pytest.approx(expected, rel=1e-12)


def test_log_loss_clips_certain_wrong_answers_to_a_finite_value():
    assert scoring.log_loss([1], [0.0]) == pytest.approx(-math.log(scoring.EPS), rel=1e-9)
    assert scoring.log_loss([0], [1.0]) == pytest.approx(-math.log(scoring.EPS), rel=1e-3)


def test_seed_spread_is_each_members_brier_their_mean_and_sample_sd():
    y = np.array([1, 0, 1, 0])
    members = np.array([[0.9, 0.1, 0.8, 0.2], [0.6, 0.4, 0.5, 0.5], [1.0, 0.0, 1.0, 0.0]])
    briers, mean, sd = scoring.seed_spread(y, members)
    assert briers == [pytest.approx(0.025), pytest.approx(0.205), 0.0]
    assert mean == pytest.approx(0.23 / 3) and sd == pytest.approx(np.std([0.025, 0.205, 0.0], ddof=1))


def test_seed_spread_needs_two_members():
    with pytest.raises(ValueError, match="two members or more, got 1"):
        scoring.seed_spread([1, 0], [[0.5, 0.5]])


def test_accuracy_counts_p_above_one_half_as_team_1_wins():
    # 0.9 -> win (right), 0.2 -> loss (right), 0.4 -> loss (wrong), 0.5 -> loss (right: not above 1/2)
    assert scoring.accuracy([1, 0, 1, 0], [0.9, 0.2, 0.4, 0.5]) == 0.75


def test_all_scores_names_each_score():
    y, p = [1, 0], [0.8, 0.4]
    assert scoring.all_scores(y, p) == {
        names.BRIER: scoring.brier(y, p),
        names.LOG_LOSS: scoring.log_loss(y, p),
        names.ACCURACY: scoring.accuracy(y, p),
    }


def seed_games(pairs: list[tuple[int, int, int]]) -> pd.DataFrame:
    """Games (seed of team 1, seed of team 2, team 1 won), each from both sides as games.csv holds them."""
    rows = [(s1, s2, won) for s1, s2, won in pairs] + [(s2, s1, 1 - won) for s1, s2, won in pairs]
    return pd.DataFrame(rows, columns=[f"{names.T1}{names.SEED_NUM}", f"{names.T2}{names.SEED_NUM}", names.TARGET])


def test_seed_baseline_favours_the_better_seed():
    # The better (lower) seed wins 5 of 6 games.
    train = seed_games([(1, 16, 1), (2, 15, 1), (3, 14, 1), (4, 13, 1), (5, 12, 1), (8, 9, 0)])
    test = seed_games([(1, 16, 1), (6, 11, 1), (7, 7, 1)])
    p = scoring.seed_baseline(train, test)
    p_1_16, p_6_11, p_7_7, p_16_1, p_11_6 = p[0], p[1], p[2], p[3], p[4]
    assert p_1_16 > p_6_11 > 0.5 > p_11_6 > p_16_1
    assert p_1_16 + p_16_1 == pytest.approx(1.0, abs=1e-6)  # both sides in training: symmetric fit
    assert p_7_7 == 0.5  # to the last bit: on a bin edge of the calibration plot
    assert ((p > 0) & (p < 1)).all()


def test_reliability_bins_mean_prediction_and_observed_frequency():
    p = [0.05, 0.15, 0.12, 0.95, 1.0]
    y = [0, 1, 0, 1, 1]
    table = scoring.reliability(y, p, bins=10)
    assert table["bin"].tolist() == [0, 1, 9]  # p = 1.0 falls in the last bin, not an eleventh
    assert table["count"].tolist() == [1, 2, 2]
    np.testing.assert_allclose(table["mean_pred"], [0.05, 0.135, 0.975])
    np.testing.assert_allclose(table["observed"], [0.0, 0.5, 1.0])


def test_a_prediction_on_a_bin_edge_falls_in_the_bin_above():
    # The seed baseline's 0.5 for equal seeds goes with [0.5, 0.6), as 0.1 goes with [0.1, 0.2).
    p = [0.5, 0.5, 0.55, 0.45, 0.1]
    y = [1, 0, 1, 0, 1]
    table = scoring.reliability(y, p, bins=10)
    assert table["bin"].tolist() == [1, 4, 5] and table["count"].tolist() == [1, 1, 3]
    np.testing.assert_allclose(table["mean_pred"], [0.1, 0.45, (0.5 + 0.5 + 0.55) / 3])
    np.testing.assert_allclose(table["observed"], [1.0, 0.0, 2 / 3])
    # Why the bins are not sklearn's calibration_curve: it puts a prediction on an edge in the bin below.
    from sklearn.calibration import calibration_curve

    observed, _ = calibration_curve(y, p, n_bins=10, strategy="uniform")
    assert observed.tolist() != table["observed"].tolist()


def test_off_the_bin_edges_reliability_is_sklearns_calibration_curve():
    from sklearn.calibration import calibration_curve

    rng = np.random.default_rng(0)
    # No prediction in 0.35-0.7: bins 4, 5 and 6 are empty and left out by both; p = 1.0 is in the last bin.
    p = np.concatenate([rng.uniform(0.0, 0.35, 200), rng.uniform(0.7, 1.0, 200), [1.0]])
    y = (rng.uniform(size=p.size) < p).astype("float64")
    table = scoring.reliability(y, p, bins=10)
    observed, mean_pred = calibration_curve(y, p, n_bins=10, strategy="uniform")
    assert table["bin"].tolist() == [0, 1, 2, 3, 7, 8, 9]
    np.testing.assert_allclose(table["mean_pred"], mean_pred, rtol=1e-12)
    np.testing.assert_allclose(table["observed"], observed, rtol=1e-12)


# --- the paired bootstrap of a Brier difference over games ---


def games_both_sides(outcomes: list[int]) -> pd.DataFrame:
    """Tournament rows as the features make them: game i between teams 100+i and 200+i in 2020,
    first from the winner's side, then from the loser's (outcomes: 1 if team 100+i won)."""
    rows = []
    for i, won in enumerate(outcomes):
        rows.append({names.SEASON: 2020, names.T1_TEAM: 100 + i, names.T2_TEAM: 200 + i, names.TARGET: won})
    for i, won in enumerate(outcomes):
        rows.append({names.SEASON: 2020, names.T1_TEAM: 200 + i, names.T2_TEAM: 100 + i, names.TARGET: 1 - won})
    return pd.DataFrame(rows)


def test_a_games_two_rows_share_one_label_and_games_differ():
    games = games_both_sides([1, 0, 1])
    labels = scoring.game_labels(games)
    assert list(labels[:3]) == list(labels[3:]) and len(set(labels)) == 3


def test_the_same_team_pair_in_two_seasons_is_two_games():
    games = pd.DataFrame({names.SEASON: [2020, 2021], names.T1_TEAM: [1, 1], names.T2_TEAM: [2, 2]})
    assert len(set(scoring.game_labels(games))) == 2


def test_the_difference_of_a_predictor_with_itself_is_zero_with_a_zero_width_interval():
    games = games_both_sides([1, 0, 1, 1, 0])
    p = np.linspace(0.2, 0.8, len(games))
    interval = scoring.paired_brier_difference(games[names.TARGET], p, p, scoring.game_labels(games))
    assert (interval.estimate, interval.low, interval.high) == (0.0, 0.0, 0.0) and not interval.excludes_zero


def test_the_estimate_is_the_difference_of_the_two_briers():
    games = games_both_sides([1, 0, 1, 1, 0, 0])
    y, rng = games[names.TARGET].to_numpy(), np.random.default_rng(1)
    p_a, p_b = rng.uniform(size=len(y)), rng.uniform(size=len(y))
    interval = scoring.paired_brier_difference(y, p_a, p_b, scoring.game_labels(games))
    assert interval.estimate == scoring.brier(y, p_a) - scoring.brier(y, p_b)
    assert interval.low <= interval.estimate <= interval.high


def test_a_clearly_better_predictor_has_an_interval_below_zero():
    outcomes = list(np.random.default_rng(2).integers(0, 2, size=60))
    games = games_both_sides(outcomes)
    y = games[names.TARGET].to_numpy(dtype="float64")
    right = np.where(y == 1, 0.8, 0.2)
    interval = scoring.paired_brier_difference(y, right, np.full(len(y), 0.5), scoring.game_labels(games))
    assert interval.high < 0 and interval.excludes_zero


def test_a_predictor_against_its_mirror_image_on_noise_is_not_distinguishable():
    # Guesses right on half the games, wrong on the other half, against a coin: no real difference.
    outcomes = [1, 0] * 30
    games = games_both_sides(outcomes)
    y = games[names.TARGET].to_numpy(dtype="float64")
    half = np.where(np.arange(len(y)) % 60 < 30, np.where(y == 1, 0.7, 0.3), np.where(y == 1, 0.3, 0.7))
    interval = scoring.paired_brier_difference(y, half, np.full(len(y), 0.5), scoring.game_labels(games))
    assert interval.low < 0 < interval.high and not interval.excludes_zero


def test_the_interval_is_the_same_every_time_for_the_same_predictions():
    games = games_both_sides([1, 0, 1, 1, 0, 1, 0])
    y, rng = games[names.TARGET].to_numpy(), np.random.default_rng(3)
    p_a, p_b = rng.uniform(size=len(y)), rng.uniform(size=len(y))
    labels = scoring.game_labels(games)
    assert scoring.paired_brier_difference(y, p_a, p_b, labels) == scoring.paired_brier_difference(y, p_a, p_b, labels)


def test_games_are_resampled_whole_not_rows():
    # One game, its two rows scored oppositely: resampling rows would give differences of either
    # sign; resampling the game always takes both rows, so the interval is the single game's difference.
    games = games_both_sides([1])
    y = games[names.TARGET].to_numpy(dtype="float64")
    interval = scoring.paired_brier_difference(y, [1.0, 1.0], [0.0, 0.0], scoring.game_labels(games))
    assert interval.low == interval.high == interval.estimate == 0.0


def test_probabilities_that_barely_vary_are_constant():
    assert scoring.is_constant(np.full(10, 0.5) + np.linspace(0, 0.001, 10))
    assert scoring.is_constant(np.ones(4))  # a saturated network: 1.0 for every game


def test_probabilities_that_tell_games_apart_are_not_constant():
    assert not scoring.is_constant(np.array([0.2, 0.4, 0.6, 0.8]))
