"""Per (season, team) regular-season features and tournament rows, as the Fabric Madness series builds them."""

from __future__ import annotations

import numpy as np
import pandas as pd

from madness import names
from madness.errors import UserError

ELO_START = 1500.0
ELO_SCALE = 400.0
# K by where the winner played: winning away counts for more (and losing at home costs more).
ELO_K = {"H": 20.0, "N": 30.0, "A": 40.0}
COMPACT_FEATURES = (names.POINTS_FOR, names.POINTS_AGAINST, names.MARGIN, names.WIN_RATIO, names.ELO, names.SEED_NUM)


def box_feature_names() -> list[str]:
    """Return the box-score feature names: the team's per-game stats, then its opponents' (prefixed Opp)."""
    return [*names.FEATURE_BOX_STATS, *(f"{names.OPP}{s}" for s in names.FEATURE_BOX_STATS)]


def seed_number(seed: pd.Series) -> pd.Series:
    """Return the seeds' numbers ('W16a' -> 16): the region letter and play-in suffix carry no strength."""
    return seed.str.slice(1, 3).astype("int64")


def elo_ratings(games: pd.DataFrame) -> pd.DataFrame:
    """Return the end-of-season Elo per (Season, TeamID); everyone starts each season at 1500.

    Games are replayed in (Season, DayNum) order; each moves the winner up and the loser down by
    K * (1 - E_winner), with K set by the winner's location.
    """
    ordered = games.sort_values([names.SEASON, names.DAYNUM], kind="stable")
    rows = []
    for season, played in ordered.groupby(names.SEASON):
        ratings = {}
        for winner, loser, k in zip(
            played[names.WTEAM].tolist(),
            played[names.LTEAM].tolist(),
            played[names.WLOC].map(ELO_K).tolist(),
            strict=True,
        ):
            rw, rl = ratings.get(winner, ELO_START), ratings.get(loser, ELO_START)
            delta = k * (1.0 - 1.0 / (1.0 + 10.0 ** ((rl - rw) / ELO_SCALE)))
            ratings[winner], ratings[loser] = rw + delta, rl - delta
        rows += [(season, team, r) for team, r in ratings.items()]
    return pd.DataFrame(rows, columns=[names.SEASON, names.TEAM_ID, names.ELO]).astype(
        {names.SEASON: "int64", names.TEAM_ID: "int64"}
    )


def both_sides(games: pd.DataFrame, stats: tuple[str, ...] = ()) -> pd.DataFrame:
    """Return each game twice, once from each team's side: Team, Opp, points, won, and per-side stats."""
    sides = [
        pd.DataFrame(
            {
                names.SEASON: games[names.SEASON].to_numpy(),
                names.TEAM_ID: games[f"{us}TeamID"].to_numpy(),
                names.POINTS_FOR: games[f"{us}Score"].to_numpy(),
                names.POINTS_AGAINST: games[f"{them}Score"].to_numpy(),
                "Won": won,
                **{stat: games[f"{us}{stat}"].to_numpy() for stat in stats},
                **{f"{names.OPP}{stat}": games[f"{them}{stat}"].to_numpy() for stat in stats},
            }
        )
        for us, them, won in (("W", "L", 1), ("L", "W", 0))
    ]
    return pd.concat(sides, ignore_index=True)


def team_season_features(
    regular: pd.DataFrame, seeds: pd.DataFrame, detailed: pd.DataFrame | None = None
) -> pd.DataFrame:
    """Return one row per (Season, TeamID) with regular-season means, win ratio, Elo and seed number.

    Box-score means (the team's and its opponents') are added only when detailed results are given.
    Unseeded teams get SeedNum NaN: they never play in the NCAA tournament.
    """
    key = [names.SEASON, names.TEAM_ID]
    grouped = both_sides(regular).groupby(key)
    frame = grouped[[names.POINTS_FOR, names.POINTS_AGAINST]].mean()
    frame[names.MARGIN] = frame[names.POINTS_FOR] - frame[names.POINTS_AGAINST]
    frame[names.WIN_RATIO] = grouped["Won"].mean()
    frame = frame.join(elo_ratings(regular).set_index(key))
    seed_frame = seeds.assign(**{names.SEED_NUM: seed_number(seeds[names.SEED])}).set_index(key)[[names.SEED_NUM]]
    frame = frame.join(seed_frame, how="outer")
    if detailed is not None:
        frame = frame.join(both_sides(detailed, names.FEATURE_BOX_STATS).groupby(key)[box_feature_names()].mean())
    return frame.reset_index().sort_values(key, ignore_index=True)


def team_feature_columns(team_features: pd.DataFrame) -> list[str]:
    """Return the team-season table's feature columns: all but Season, TeamID and League."""
    return [c for c in team_features.columns if c not in (names.SEASON, names.TEAM_ID, names.LEAGUE)]


def feature_columns(team_columns: list[str]) -> list[str]:
    """Return the game rows' feature columns: every team column for team 1 (T1_), then for team 2 (T2_)."""
    return [f"{side}{c}" for side in (names.T1, names.T2) for c in team_columns]


def pair_rows(pairs: pd.DataFrame, team_features: pd.DataFrame) -> pd.DataFrame:
    """Attach both teams' features to (Season, T1_TeamID, T2_TeamID) rows."""
    columns = team_feature_columns(team_features)
    out = pairs
    for side, team in ((names.T1, names.T1_TEAM), (names.T2, names.T2_TEAM)):
        renamed = team_features[[names.SEASON, names.TEAM_ID, *columns]].rename(
            columns={names.TEAM_ID: team, **{c: f"{side}{c}" for c in columns}}
        )
        out = out.merge(renamed, on=[names.SEASON, team], how="left", validate="many_to_one")
    return out


def tournament_rows(tourney: pd.DataFrame, team_features: pd.DataFrame) -> pd.DataFrame:
    """Return each tournament game as two rows, one from each team's side; target: team 1 won."""
    sides = [
        pd.DataFrame(
            {names.SEASON: tourney[names.SEASON], names.T1_TEAM: tourney[t1], names.T2_TEAM: tourney[t2]}
        ).assign(**{names.TARGET: won})
        for t1, t2, won in ((names.WTEAM, names.LTEAM, 1), (names.LTEAM, names.WTEAM, 0))
    ]
    return pair_rows(pd.concat(sides, ignore_index=True), team_features)


def seeded_pairs(seeds: pd.DataFrame, season: int) -> pd.DataFrame:
    """Return every pair of a season's seeded teams, lower team id first (Kaggle's submission order)."""
    teams = np.sort(seeds.loc[seeds[names.SEASON] == season, names.TEAM_ID].unique())
    if len(teams) < 2:
        raise UserError(f"season {season} has no tournament seeds; seeded seasons: {season_span(seeds[names.SEASON])}")
    low, high = np.triu_indices(len(teams), k=1)
    return pd.DataFrame({names.SEASON: season, names.T1_TEAM: teams[low], names.T2_TEAM: teams[high]})


def season_span(seasons: pd.Series) -> str:
    """Return the first and last of `seasons` as 'first-last', or 'none' when there are none."""
    return f"{seasons.min()}-{seasons.max()}" if len(seasons) else "none"
