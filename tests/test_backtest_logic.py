"""The backtest's pure logic (madness.backtest): season splits, scores, ranking, nested choice, statements."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from madness import backtest, names
from madness.dataset import Seasons
from madness.errors import UserError

WOMEN = [s for s in range(1998, 2024) if s != 2020]  # tournament seasons of the real women's data


def predictions(games: list[tuple]) -> pd.DataFrame:
    """A predictions.csv from (season, team 1, team 2, team 1 won, p, p_baseline): both rows of each game."""
    rows = []
    for season, t1, t2, won, p, baseline in games:
        rows.append((season, t1, t2, won, p, baseline))
        rows.append((season, t2, t1, 1 - won, 1 - p, 1 - baseline))
    columns = [names.SEASON, names.T1_TEAM, names.T2_TEAM, names.TARGET, names.PREDICTION, names.BASELINE_PREDICTION]
    return pd.DataFrame(rows, columns=columns)


# --- seasons ---


def test_seasons_are_read_from_ranges_and_lists():
    assert backtest.parse_seasons("2019,2021-2023") == [2019, 2021, 2022, 2023]
    assert backtest.parse_seasons("2015-2017") == [2015, 2016, 2017]


@pytest.mark.parametrize("text", ["2023-2021", "2019,2019", "2019,2018-2020", "twenty", "2019-", ""])
def test_bad_seasons_are_refused_in_one_line(text):
    with pytest.raises(UserError) as caught:
        backtest.parse_seasons(text)
    assert "\n" not in str(caught.value)


def test_no_season_trains_or_validates_on_itself_or_a_later_one():
    splits, _ = backtest.season_splits(list(range(2005, 2024)), WOMEN, 2003)
    for split in splits:
        split.check()
        frame = pd.Series(WOMEN)
        split_of = split.split_of(frame)
        used = frame[split_of.isin([names.TRAIN, names.VAL])]
        assert used.max() < split.test
        assert list(frame[split_of == names.TEST]) == [split.test]


def test_a_season_without_a_tournament_is_skipped():
    splits, skipped = backtest.season_splits([2019, 2020, 2021], WOMEN, 2003)
    assert [s.test for s in splits] == [2019, 2021]
    assert skipped == [2020]


def test_validation_is_the_latest_earlier_tournament_season():
    splits, _ = backtest.season_splits([2019, 2021, 2022], WOMEN, 2003)
    assert splits == [Seasons(2003, 2018, 2019, 2019), Seasons(2003, 2019, 2021, 2021), Seasons(2003, 2021, 2022, 2022)]


def test_a_season_with_nothing_to_train_on_is_refused():
    with pytest.raises(UserError, match="season 2004 cannot be backtested.*tournaments in the data: 1998-2023"):
        backtest.season_splits([2004, 2005], WOMEN, 2003)


def test_seasons_without_any_tournament_are_refused():
    with pytest.raises(UserError, match="none of the seasons 2020-2020 had a tournament"):
        backtest.season_splits([2020], WOMEN, 2003)


# --- scores ---

TWO_SEASONS = predictions(
    [
        (2021, 1, 2, 1, 0.8, 0.6),  # per row: (0.2^2, 0.4^2)
        (2021, 3, 4, 0, 0.4, 0.5),  # (0.4^2, 0.5^2)
        (2022, 1, 3, 1, 0.9, 0.7),  # (0.1^2, 0.3^2)
    ]
)


def test_season_scores_are_each_seasons_brier_and_the_baselines():
    scores = backtest.season_scores(TWO_SEASONS)
    assert scores[names.SEASON].tolist() == [2021, 2022]
    assert scores[names.SEASON_GAMES].tolist() == [2, 1]
    assert scores[names.SEASON_BRIER].tolist() == pytest.approx([(0.04 + 0.16) / 2, 0.01])
    assert scores[names.SEASON_BASELINE_BRIER].tolist() == pytest.approx([(0.16 + 0.25) / 2, 0.09])


def test_the_overall_brier_weighs_every_game_once_whatever_its_season():
    scores = backtest.overall_scores(TWO_SEASONS)
    assert scores[names.BRIER] == pytest.approx((0.04 + 0.16 + 0.01) / 3)
    assert scores[names.BASELINE_BRIER] == pytest.approx((0.16 + 0.25 + 0.09) / 3)
    assert scores[names.BRIER_VS_BASELINE] == pytest.approx(scores[names.BRIER] - scores[names.BASELINE_BRIER])
    assert scores[names.N_GAMES] == 3
    assert (
        scores[names.BRIER_VS_BASELINE_LOW] <= scores[names.BRIER_VS_BASELINE] <= scores[names.BRIER_VS_BASELINE_HIGH]
    )


def test_the_ranking_puts_the_best_backtest_brier_first_and_failed_pairs_last():
    rows = [
        {"model": "small", "lr": "0.1", "status": "FAILED", "run_id": ""},
        {
            "model": "small",
            "lr": "0.01",
            names.BRIER: 0.20,
            2021: 0.19,
            2022: 0.21,
            "status": "FINISHED",
            "run_id": "a",
        },
        {
            "model": "large",
            "lr": "0.01",
            names.BRIER: 0.18,
            2021: 0.17,
            2022: 0.19,
            "status": "FINISHED",
            "run_id": "b",
        },
    ]
    table = backtest.ranking(rows)
    assert table["run_id"].tolist() == ["b", "a", ""]
    assert list(table.columns[-4:]) == ["2021", "2022", "status", "run_id"]
    assert backtest.scored(table)["run_id"].tolist() == ["b", "a"]


# --- the nested choice ---


def pair_predictions(early: float, late: float) -> pd.DataFrame:
    """Team 1 wins every game; the pair predicts `early` for it on 2018-2019 and `late` on 2021-2022."""
    return predictions(
        [(season, 1, 2 + season % 10, 1, early if season < 2020 else late, 0.6) for season in (2018, 2019, 2021, 2022)]
    )


def test_the_nested_choice_is_made_on_the_earlier_seasons_and_scored_on_the_later():
    nested = backtest.nested_choice(
        {"small_0.01": pair_predictions(0.9, 0.7), "large_0.01": pair_predictions(0.8, 0.95)}, until=2019
    )
    assert nested.chosen == "small_0.01" and nested.best == "large_0.01"
    assert nested.chosen_before == pytest.approx(0.01)
    assert nested.chosen_after == pytest.approx(0.09)
    assert nested.best_after == pytest.approx(0.0025)
    assert nested.baseline_after == pytest.approx(0.16)
    assert nested.cost == pytest.approx(0.09 - 0.0025)
    assert (nested.seasons_before, nested.seasons_after, nested.games_after) == ([2018, 2019], [2021, 2022], 2)


def test_there_is_no_nested_choice_without_later_seasons():
    assert backtest.nested_choice({"small_0.01": pair_predictions(0.9, 0.7)}, until=2022) is None


def test_the_nested_statement_says_what_choosing_cost():
    nested = backtest.nested_choice(
        {"small_0.01": pair_predictions(0.9, 0.7), "large_0.01": pair_predictions(0.8, 0.95)}, until=2019
    )
    text = backtest.nested_text(nested, 2019)
    assert text.startswith("chosen on 2018-2019 alone: small with learning rate 0.01 (brier 0.0100 there)")
    assert "on 2021-2022 (2 games) it scores 0.0900, the seed baseline 0.1600" in text
    assert text.endswith(
        "choosing cost +0.0875 against the best pair there in hindsight (large with learning rate 0.01, brier 0.0025)"
    )


def test_the_nested_statement_when_the_choice_was_the_best_there():
    nested = backtest.nested_choice({"small_0.01": pair_predictions(0.9, 0.7)}, until=2019)
    assert backtest.nested_text(nested, 2019).endswith("the same pair: choosing cost nothing here")


def test_the_nested_statement_says_why_it_is_missing():
    assert "after it (to score on)" in backtest.nested_text(None, 2023)


def test_seasons_are_named_as_spans():
    assert backtest.span_text([2015, 2016, 2017, 2018, 2019, 2021, 2022, 2023]) == "2015-2019, 2021-2023"
    assert backtest.span_text([2019]) == "2019"


# --- the report's statements ---


def best_row(brier: float, low: float, high: float) -> dict:
    return {
        "model": "small",
        "lr": "0.001",
        names.BRIER: brier,
        names.BASELINE_BRIER: 0.1567,
        names.BRIER_VS_BASELINE: brier - 0.1567,
        names.BRIER_VS_BASELINE_LOW: low,
        names.BRIER_VS_BASELINE_HIGH: high,
        names.N_GAMES: 512.0,
    }


@pytest.mark.parametrize(
    "low,high,verdict",
    [
        (-0.012, -0.003, "better than the seed baseline"),
        (0.001, 0.01, "worse than the seed baseline"),
        (-0.01, 0.002, "not distinguishable from the seed baseline"),
    ],
)
def test_the_best_line_says_how_it_compares_with_the_baseline(low, high, verdict):
    text = backtest.best_text(best_row(0.1491, low, high))
    assert text.startswith("small with learning rate 0.001, backtest brier 0.1491 over 512 games (seed baseline 0.1567")
    assert text.endswith(f": {verdict})")


def test_a_season_pair_is_named_for_its_run():
    assert backtest.SeasonPair("small", "0.01", 2021).name == "small_0.01_2021"
    assert not math.isnan(backtest.overall_scores(TWO_SEASONS)[names.BRIER])
