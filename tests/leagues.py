"""Tiny leagues built in code, in Kaggle's columns: fixtures for the reader, features and dataset tests."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from madness import kaggle, names

TEAMS = (101, 102, 103, 104)
SEED_LABELS = ("W01", "X02", "Y03", "Z16a")


def compact(rows: list[tuple]) -> pd.DataFrame:
    """Compact results from (Season, DayNum, WTeamID, WScore, LTeamID, LScore, WLoc) tuples."""
    frame = pd.DataFrame(
        rows, columns=[names.SEASON, names.DAYNUM, names.WTEAM, names.WSCORE, names.LTEAM, names.LSCORE, names.WLOC]
    )
    frame[names.NUMOT] = 0
    return frame


def detailed(games: pd.DataFrame, offset: int = 0) -> pd.DataFrame:
    """Detailed results for compact `games`: every box stat a distinct number per game and side."""
    out = games.copy()
    for i, stat in enumerate(names.BOX_STATS):
        out[f"W{stat}"] = [offset + 100 * i + 2 * g for g in range(len(games))]
        out[f"L{stat}"] = [offset + 100 * i + 2 * g + 1 for g in range(len(games))]
    return out


def season_frames(seasons=range(2001, 2005), no_tourney=(), bump: dict | None = None) -> dict[str, pd.DataFrame]:
    """A four-team league: a round robin each season, all four seeded, a three-game tournament.

    `no_tourney` lists seasons without a tournament (like 2020); `bump` adds points to the
    winner of every regular-season game of the given seasons ({season: points}).
    """
    bump = bump or {}
    regular, tourney, seeds = [], [], []
    for s in seasons:
        k = s - 2000
        day = 10
        for i, a in enumerate(TEAMS):
            for b in TEAMS[i + 1 :]:
                winner, loser = (a, b) if (a + b + k) % 3 else (b, a)
                loc = "HAN"[(a * b + k) % 3]
                regular.append((s, day, winner, 60 + (a % 7) * k % 23 + bump.get(s, 0), loser, 50 + (b % 5) + k, loc))
                day += 3
        seeds += [(s, label, team) for label, team in zip(SEED_LABELS, TEAMS, strict=True)]
        if s not in no_tourney:
            tourney += [
                (s, 136, TEAMS[0], 70 + k, TEAMS[3], 60, "N"),
                (s, 136, TEAMS[2], 66, TEAMS[1], 64 - k % 3, "N"),
                (s, 138, TEAMS[2] if k % 2 else TEAMS[0], 71, TEAMS[0] if k % 2 else TEAMS[2], 69, "N"),
            ]
    return {
        names.REGULAR_COMPACT: compact(regular),
        names.TOURNEY_COMPACT: compact(tourney),
        names.TOURNEY_SEEDS: pd.DataFrame(seeds, columns=[names.SEASON, names.SEED, names.TEAM_ID]),
        names.TEAMS: pd.DataFrame({names.TEAM_ID: list(TEAMS), names.TEAM_NAME: [f"Team {t}" for t in TEAMS]}),
    }


def league_files(frames: dict[str, pd.DataFrame], league: str = "W", box: bool = False) -> kaggle.LeagueFiles:
    """LeagueFiles as `kaggle.read_league` would return them, typed by the reader's own checks."""
    checked = {stem: kaggle.check_columns(frame, kaggle.SCHEMAS[stem].columns, stem) for stem, frame in frames.items()}
    box_frame = None
    if box:
        box_frame = kaggle.check_columns(
            detailed(frames[names.REGULAR_COMPACT]), kaggle.SCHEMAS[names.REGULAR_DETAILED].columns, "detailed"
        )
    return kaggle.LeagueFiles(
        league=league,
        regular=checked[names.REGULAR_COMPACT],
        tourney=checked[names.TOURNEY_COMPACT],
        seeds=checked[names.TOURNEY_SEEDS],
        teams=checked[names.TEAMS],
        detailed=box_frame,
    )


def write_folder(folder: Path, frames: dict[str, pd.DataFrame], league: str = "W") -> Path:
    """Write `frames` as Kaggle CSVs (`WTeams.csv`, ...) into `folder`."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for stem, frame in frames.items():
        frame.to_csv(folder / kaggle.file_name(league, stem), index=False, lineterminator="\n")
    return folder
