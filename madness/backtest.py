"""The season-by-season backtest's pure logic: which seasons train, validate and are predicted, each
pair's scores over the predicted seasons, the ranking, and the nested choice.

A backtest predicts each chosen season from the seasons before it only: the latest earlier season
with a tournament validates (its loss picks the kept weights), the seasons from `first_season` up
to it train. Seasons without a tournament (2020) are skipped. A predictions frame is the train
step's predictions.csv (each test row: season, teams, outcome, the model's and the seed baseline's
probabilities), one per predicted season or their concatenation.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import groupby

import pandas as pd

from madness import features, names, scoring
from madness.dataset import Seasons
from madness.errors import UserError
from madness.names import Status
from madness.sweep import Pair

RANKING_COLUMNS = [
    "model",
    "lr",
    names.BRIER,
    names.BASELINE_BRIER,
    names.BRIER_VS_BASELINE,
    names.BRIER_VS_BASELINE_LOW,
    names.BRIER_VS_BASELINE_HIGH,
    names.N_GAMES,
    "status",
    "run_id",
]


@dataclass(frozen=True)
class SeasonPair(Pair):
    """One pair's train run for one predicted season, as the sweep's launcher takes a pair."""

    season: int

    @property
    def name(self) -> str:
        """Return the season run's name, `<model>_<lr>_<season>`."""
        return f"{super().name}_{self.season}"


def parse_seasons(text: str) -> list[int]:
    """Return the seasons given as ranges and single seasons, comma-separated (`2015-2023`, `2019,2021-2023`),
    in increasing order; a season given twice, a reversed range or a non-number is refused."""
    seasons: list[int] = []
    for part in (p.strip() for p in str(text).split(",")):
        low, sep, high = part.partition("-")
        try:
            bounds = (int(low), int(high)) if sep else (int(part), int(part))
        except ValueError:
            raise UserError(
                f"seasons must be seasons or ranges A-B, comma-separated (e.g. 2015-2023 or 2019,2021-2023), got {text!r}"
            ) from None
        if bounds[0] > bounds[1]:
            raise UserError(f"seasons: range {part!r} runs backwards; write it {bounds[1]}-{bounds[0]}")
        seasons.extend(range(bounds[0], bounds[1] + 1))
    repeated = sorted({s for s in seasons if seasons.count(s) > 1})
    if repeated:
        raise UserError(f"seasons lists {repeated[0]} twice in {text!r}; give each season once")
    return sorted(seasons)


def season_splits(wanted: list[int], played: list[int], first: int) -> tuple[list[Seasons], list[int]]:
    """Return the train run's seasons for each wanted season that had a tournament (it is the test and
    last season), and the wanted seasons that had none. Validation is the latest earlier tournament
    season; at least one tournament season from `first` on must come before it, to train on."""
    played = sorted(set(played))
    span = features.season_span(pd.Series(played))
    splits = []
    for season in (s for s in wanted if s in played):
        earlier = [s for s in played if first <= s < season]
        if len(earlier) < 2:
            raise UserError(
                f"season {season} cannot be backtested: it needs two tournament seasons from first_season {first} "
                f"on before it (one to train on, the latest to validate); tournaments in the data: {span}"
            )
        splits.append(Seasons(first, earlier[-1], season, season))
    if not splits:
        raise UserError(
            f"none of the seasons {wanted[0]}-{wanted[-1]} had a tournament; tournaments in the data: {span}"
        )
    return splits, [s for s in wanted if s not in played]


def season_scores(predictions: pd.DataFrame) -> pd.DataFrame:
    """Per predicted season: its games, the model's Brier and the seed baseline's."""
    rows = [
        {
            names.SEASON: int(season),
            names.SEASON_GAMES: len(part) // 2,
            names.SEASON_BRIER: scoring.brier(part[names.TARGET], part[names.PREDICTION]),
            names.SEASON_BASELINE_BRIER: scoring.brier(part[names.TARGET], part[names.BASELINE_PREDICTION]),
        }
        for season, part in predictions.groupby(names.SEASON, sort=True)
    ]
    return pd.DataFrame(
        rows, columns=[names.SEASON, names.SEASON_GAMES, names.SEASON_BRIER, names.SEASON_BASELINE_BRIER]
    )


def overall_scores(predictions: pd.DataFrame) -> dict[str, float]:
    """Over every predicted game (each game counts once, whatever its season): the model's Brier,
    the seed baseline's, and their difference with its paired-bootstrap interval (games resampled whole)."""
    y = predictions[names.TARGET]
    against = scoring.paired_brier_difference(
        y, predictions[names.PREDICTION], predictions[names.BASELINE_PREDICTION], scoring.game_labels(predictions)
    )
    return {
        names.BRIER: scoring.brier(y, predictions[names.PREDICTION]),
        names.BASELINE_BRIER: scoring.brier(y, predictions[names.BASELINE_PREDICTION]),
        names.BRIER_VS_BASELINE: against.estimate,
        names.BRIER_VS_BASELINE_LOW: against.low,
        names.BRIER_VS_BASELINE_HIGH: against.high,
        names.N_GAMES: len(predictions) // 2,
    }


def ranking(rows: list[dict]) -> pd.DataFrame:
    """Return one row per pair (RANKING_COLUMNS, with one Brier column per predicted season before the status),
    best backtest Brier first; pairs with a failed season (no Brier) last."""
    table = pd.DataFrame(rows)
    seasons = sorted(c for c in table.columns if isinstance(c, int))
    table = table.reindex(columns=[*RANKING_COLUMNS[:-2], *seasons, *RANKING_COLUMNS[-2:]])
    table.columns = [str(c) for c in table.columns]
    return table.sort_values([names.BRIER, "model", "lr"], na_position="last", kind="stable", ignore_index=True)


def scored(table: pd.DataFrame) -> pd.DataFrame:
    """Return the ranking's FINISHED rows that have a backtest Brier, in the ranking's order."""
    return table[table["status"] == Status.FINISHED].dropna(subset=[names.BRIER])


@dataclass(frozen=True)
class Nested:
    """The pair chosen on the seasons up to `until` alone, scored on the later ones."""

    until: int
    chosen: str
    chosen_before: float  # its Brier on the choosing seasons
    chosen_after: float  # and on the later ones
    best: str  # the best pair on the later seasons, in hindsight
    best_after: float
    baseline_after: float
    seasons_before: list[int]
    seasons_after: list[int]
    games_after: int

    @property
    def cost(self) -> float:
        """Return how much worse the choice scores on the later seasons than the pair that was best there."""
        return self.chosen_after - self.best_after


def nested_choice(predictions: dict[str, pd.DataFrame], until: int) -> Nested | None:
    """Choose the pair with the lowest Brier on the seasons up to `until` and score it on the later
    seasons beside the best pair there and the seed baseline; None when either side has no season.
    `predictions`: each pair's name -> its predictions over every predicted season (the same games)."""
    if not predictions:
        return None
    first = next(iter(predictions.values()))
    before = sorted({int(s) for s in first[names.SEASON] if s <= until})
    after = sorted({int(s) for s in first[names.SEASON] if s > until})
    if not before or not after:
        return None

    def brier_on(frame: pd.DataFrame, column: str, seasons: list[int]) -> float:
        """Return the Brier of `column` on the rows of `frame` in `seasons`."""
        part = frame[frame[names.SEASON].isin(seasons)]
        return scoring.brier(part[names.TARGET], part[column])

    by_before = {name: brier_on(frame, names.PREDICTION, before) for name, frame in predictions.items()}
    by_after = {name: brier_on(frame, names.PREDICTION, after) for name, frame in predictions.items()}
    chosen = min(by_before, key=lambda name: (by_before[name], name))
    best = min(by_after, key=lambda name: (by_after[name], name))
    return Nested(
        until,
        chosen,
        by_before[chosen],
        by_after[chosen],
        best,
        by_after[best],
        brier_on(first, names.BASELINE_PREDICTION, after),
        before,
        after,
        int(first[names.SEASON].isin(after).sum()) // 2,
    )


def span_text(seasons: list[int]) -> str:
    """Return `2015-2019` for consecutive seasons, `2015-2019, 2021-2023` around a gap."""
    runs = groupby(enumerate(seasons), lambda numbered: numbered[1] - numbered[0])  # constant along consecutive seasons
    spans = [[season for _, season in run] for _, run in runs]
    return ", ".join(str(span[0]) if len(span) == 1 else f"{span[0]}-{span[-1]}" for span in spans)


def nested_text(nested: Nested | None, until: int) -> str:
    """Return what the report says of choosing: the nested choice's score on seasons it was not chosen on."""
    if nested is None:
        return (
            f"not shown: it needs predicted seasons both up to {until} (to choose on) and after it (to score on); "
            "set choose_until between the first and the last predicted season"
        )
    cost = (
        "the same pair: choosing cost nothing here"
        if nested.chosen == nested.best
        else f"choosing cost {nested.cost:+.4f} against the best pair there in hindsight ({pair_label(nested.best)}, "
        f"brier {nested.best_after:.4f})"
    )
    return (
        f"chosen on {span_text(nested.seasons_before)} alone: {pair_label(nested.chosen)} (brier {nested.chosen_before:.4f} there); "
        f"on {span_text(nested.seasons_after)} ({nested.games_after} games) it scores {nested.chosen_after:.4f}, "
        f"the seed baseline {nested.baseline_after:.4f}; {cost}"
    )


def pair_label(name: str) -> str:
    """Return `small_0.001` as the report says it: `small with learning rate 0.001`."""
    model, _, lr = name.rpartition("_")
    return f"{model} with learning rate {lr}"


def best_text(best: dict) -> str:
    """Return the report's last line, before the pair run's id: the pair to use and its backtest scores."""
    interval = f"[{best[names.BRIER_VS_BASELINE_LOW]:+.4f}, {best[names.BRIER_VS_BASELINE_HIGH]:+.4f}]"
    verdict = (
        "better than the seed baseline"
        if best[names.BRIER_VS_BASELINE_HIGH] < 0
        else "worse than the seed baseline"
        if best[names.BRIER_VS_BASELINE_LOW] > 0
        else "not distinguishable from the seed baseline"
    )
    return (
        f"{best['model']} with learning rate {best['lr']}, backtest brier {best[names.BRIER]:.4f} over {int(best[names.N_GAMES])} "
        f"games (seed baseline {best[names.BASELINE_BRIER]:.4f}, difference {best[names.BRIER_VS_BASELINE]:+.4f}, "
        f"{scoring.BOOTSTRAP_LEVEL:.0%} {interval}: {verdict})"
    )
