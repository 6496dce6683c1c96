"""A synthetic league in Kaggle's exact file format, generated from a seed.

Teams get hidden strengths that drift from season to season; a regular season of scored games with
box scores is played; the 68 strongest-looking teams are seeded into a Kaggle-style bracket (play-in
games included) that is played out. Like the real data before the 2024 tournament, the last season
has a regular season and seeds but no tournament results. Every team name says it is synthetic.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from madness import names
from madness.kaggle import file_name

FIRST_SEASON = 2003
LAST_SEASON = 2024
N_TEAMS = 150
ROUNDS = 28  # regular-season games per team
FIRST_TEAM_ID = {"M": 1101, "W": 3101}
HOME_EDGE = 3.5
MARGIN_PER_STRENGTH = 9.0
MARGIN_NOISE = 11.0
# The box score's counts that make no points, drawn around these means (a team's, per game).
COUNT_MEANS = {"OR": 10, "DR": 24, "Ast": 13, "TO": 14, "Stl": 7, "Blk": 3, "PF": 18}
REGIONS = "WXYZ"
# 68 seeds: two regions have play-in 11s and two have play-in 16s, as in Kaggle's files since 2011.
SEED_LABELS = [
    *(f"{r}{s:02d}" for s in range(1, 11) for r in REGIONS),
    *["W11a", "W11b", "X11a", "X11b", "Y11", "Z11"],
    *(f"{r}{s:02d}" for s in range(12, 16) for r in REGIONS),
    *["W16", "X16", "Y16a", "Y16b", "Z16a", "Z16b"],
]
FIRST_ROUND_PAIRS = [(1, 16), (8, 9), (5, 12), (4, 13), (6, 11), (3, 14), (7, 10), (2, 15)]
ROUND_DAYS = [136, 138, 143, 145, 152, 154]
PLAY_IN_DAY = 134
_SWAP_HOME_AND_AWAY = str.maketrans("HA", "AH")  # b's location seen from a's side


def write_league(folder: Path, seed: int, leagues=names.LEAGUES) -> list[Path]:
    """Write every required Kaggle file for `leagues` into `folder`; return the paths written."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for index, league in enumerate(names.LEAGUES):
        if league not in leagues:
            continue
        rng = np.random.default_rng([seed, index])
        for stem, frame in generate(league, rng).items():
            path = folder / file_name(league, stem)
            frame.to_csv(path, index=False, lineterminator="\n")
            written.append(path)
    return written


def generate(league: str, rng: np.random.Generator) -> dict[str, pd.DataFrame]:
    """Return one league's Kaggle tables by file stem, drawn from `rng`: every season's regular season (compact
    and detailed) and seeds, the tournaments of all but the last season, and the teams."""
    team_ids = np.arange(N_TEAMS) + FIRST_TEAM_ID[league]
    strength = rng.normal(0.0, 1.0, N_TEAMS)
    regular, detailed, tourney, seeds = [], [], [], []
    for season in range(FIRST_SEASON, LAST_SEASON + 1):
        strength = 0.8 * strength + 0.6 * rng.normal(0.0, 1.0, N_TEAMS)
        games = _regular_season(season, strength, rng)
        detailed.append(_with_box_scores(games, rng))
        regular.append(games)
        season_seeds = _seed_teams(season, games, team_ids)
        seeds.append(season_seeds)
        if season < LAST_SEASON:
            tourney.append(_play_bracket(season, season_seeds, strength, team_ids, rng))
    results = {
        names.REGULAR_COMPACT: pd.concat(regular, ignore_index=True),
        names.REGULAR_DETAILED: pd.concat(detailed, ignore_index=True),
        names.TOURNEY_COMPACT: pd.concat(tourney, ignore_index=True),
    }
    for frame in results.values():  # played between team indices; Kaggle's files hold team ids
        for column in (names.WTEAM, names.LTEAM):
            frame[column] = team_ids[frame[column]]
    return {
        **results,
        names.TOURNEY_SEEDS: pd.concat(seeds, ignore_index=True),
        names.TEAMS: _teams(league, team_ids),
    }


def _teams(league: str, team_ids: np.ndarray) -> pd.DataFrame:
    frame = pd.DataFrame(
        {names.TEAM_ID: team_ids, names.TEAM_NAME: [f"Synthetic {league}{i:03d}" for i in range(len(team_ids))]}
    )
    if league == "M":  # Kaggle's men's file has two more columns than the women's
        frame["FirstD1Season"] = FIRST_SEASON
        frame["LastD1Season"] = LAST_SEASON
    return frame


def _game_margins(strength_a, strength_b, home_a, rng) -> tuple[np.ndarray, np.ndarray]:
    """Return the integer margin of team a over b, never 0, and each game's overtimes (1 for a tie it settles)."""
    expected = MARGIN_PER_STRENGTH * (strength_a - strength_b) + HOME_EDGE * home_a
    margin = np.rint(expected + rng.normal(0.0, MARGIN_NOISE, len(expected))).astype(int)
    tied = margin == 0
    margin[tied] = rng.choice([-1, 1], tied.sum()) * rng.integers(1, 8, tied.sum())
    return margin, tied.astype(int)


def _compact(season, days, a, b, margin, overtime, loc_a, rng) -> pd.DataFrame:
    """Kaggle compact rows from games of team index a against b, seen from the winner's side."""
    total = rng.normal(140.0, 14.0, len(a)).round()
    a_won = margin > 0
    winner_score = ((total + np.abs(margin)) // 2).astype(int)
    loser_score = winner_score - np.abs(margin)
    return pd.DataFrame(
        {
            names.SEASON: season,
            names.DAYNUM: days,
            names.WTEAM: np.where(a_won, a, b),
            names.WSCORE: winner_score,
            names.LTEAM: np.where(a_won, b, a),
            names.LSCORE: loser_score,
            names.WLOC: np.where(a_won, loc_a, np.strings.translate(loc_a, _SWAP_HOME_AND_AWAY)),
            names.NUMOT: overtime,
        }
    )


def _regular_season(season, strength, rng) -> pd.DataFrame:
    pairs = np.stack([rng.permutation(N_TEAMS) for _ in range(ROUNDS)])
    a, b = pairs[:, 0::2].ravel(), pairs[:, 1::2].ravel()
    days = 10 + 4 * np.repeat(np.arange(ROUNDS), N_TEAMS // 2) + rng.integers(0, 3, len(a))
    loc_a = rng.choice(np.array(["H", "A", "N"]), len(a), p=[0.45, 0.45, 0.10])
    home_a = (loc_a == "H").astype(float) - (loc_a == "A").astype(float)
    margin, overtime = _game_margins(strength[a], strength[b], home_a, rng)
    games = _compact(season, days, a, b, margin, overtime, loc_a, rng)
    return games.sort_values(names.DAYNUM, kind="stable", ignore_index=True)


def _box_side(score: np.ndarray, rng) -> dict[str, np.ndarray]:
    """Box score whose makes add up exactly to the score: 2*FGM + FGM3 + FTM == score."""
    size = len(score)
    fga3 = rng.integers(12, 30, size)
    fgm3 = np.minimum(rng.binomial(fga3, 0.34), score // 3)
    fta = rng.integers(8, 28, size)
    ftm = np.minimum(rng.binomial(fta, 0.71), score - 3 * fgm3)
    # The rest must be an even number of two-point points: one free throw fewer, or 0 made becomes 1.
    ftm = np.abs(ftm - (score - 3 * fgm3 - ftm) % 2)
    fgm2 = (score - 3 * fgm3 - ftm) // 2
    fta = np.maximum(fta, ftm)
    fgm = fgm2 + fgm3
    fga = fgm + fga3 - fgm3 + rng.integers(18, 32, size)
    return {
        "FGM": fgm,
        "FGA": fga,
        "FGM3": fgm3,
        "FGA3": fga3,
        "FTM": ftm,
        "FTA": fta,
        **{stat: rng.poisson(mean, size) for stat, mean in COUNT_MEANS.items()},
    }


def _with_box_scores(games: pd.DataFrame, rng) -> pd.DataFrame:
    out = games.copy()
    for side, score in (("W", names.WSCORE), ("L", names.LSCORE)):
        for stat, values in _box_side(out[score].to_numpy(), rng).items():
            out[f"{side}{stat}"] = values
    return out


def _seed_teams(season, games, team_ids) -> pd.DataFrame:
    """Return the seeded teams, picked as a committee picks them: by win ratio and margin, not by the hidden strength."""
    wins = np.bincount(games[names.WTEAM], minlength=N_TEAMS)
    played = wins + np.bincount(games[names.LTEAM], minlength=N_TEAMS)
    margin = np.bincount(games[names.WTEAM], weights=games[names.WSCORE] - games[names.LSCORE], minlength=N_TEAMS)
    margin -= np.bincount(games[names.LTEAM], weights=games[names.WSCORE] - games[names.LSCORE], minlength=N_TEAMS)
    score = wins / np.maximum(played, 1) + margin / np.maximum(played, 1) / 40.0
    picked = np.argsort(-score, kind="stable")[: len(SEED_LABELS)]
    return pd.DataFrame({names.SEASON: season, names.SEED: SEED_LABELS, names.TEAM_ID: team_ids[picked]})


def _play_bracket(season, seeds, strength, team_ids, rng) -> pd.DataFrame:
    index_of = {tid: i for i, tid in enumerate(team_ids)}
    slot = {}  # "W16" -> team index, after the play-in games
    play_ins = {}
    for label, tid in zip(seeds[names.SEED], seeds[names.TEAM_ID], strict=True):
        if label[-1] in "ab":
            play_ins.setdefault(label[:-1], []).append(index_of[tid])
        else:
            slot[label] = index_of[tid]
    labels = sorted(play_ins)
    pairs = np.array([play_ins[label] for label in labels])
    winners, games = _neutral_round(season, PLAY_IN_DAY, pairs[:, 0], pairs[:, 1], strength, rng)
    slot.update(zip(labels, winners, strict=True))
    rounds = [games]
    alive = np.array([slot[f"{region}{s:02d}"] for region in REGIONS for pair in FIRST_ROUND_PAIRS for s in pair])
    for day in ROUND_DAYS:
        alive, games = _neutral_round(season, day, alive[0::2], alive[1::2], strength, rng)
        rounds.append(games)
    return pd.concat(rounds, ignore_index=True)


def _neutral_round(season, day, a, b, strength, rng):
    margin, overtime = _game_margins(strength[a], strength[b], np.zeros(len(a)), rng)
    games = _compact(season, np.full(len(a), day), a, b, margin, overtime, np.full(len(a), "N"), rng)
    return np.where(margin > 0, a, b), games
