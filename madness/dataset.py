"""From raw Kaggle files (or the synthetic league) to split, scaled-ready tournament rows.

The feature folder written here is the contract between steps: `games.csv` (every tournament row
with its split), `team_season.csv`, `scaler.json` (feature list, means, scales fit on training
rows only) and `manifest.json` (each input file's sha256 and row count).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

import madness.features
from madness import kaggle, names, synthetic
from madness.errors import UserError


@dataclass(frozen=True)
class Seasons:
    """Train on [first, val), validate on [val, test), test on [test, last]: a season is in one split only.

    test = last + 1 leaves no test seasons: every season with results is used for training or
    validation, as a model for the coming tournament wants (it is scored when that tournament is played)."""

    first: int
    val: int
    test: int
    last: int

    @property
    def has_test(self) -> bool:
        """Return whether there is a test season to score."""
        return self.test <= self.last

    def check(self) -> Seasons:
        """Return the seasons; raise UserError unless first < val < test <= last + 1."""
        if not self.first < self.val < self.test <= self.last + 1:
            raise UserError(
                f"seasons must satisfy first_season < val_season < test_season <= last_season + 1 "
                f"(test_season = last_season + 1: no test seasons), "
                f"got {self.first} < {self.val} < {self.test} <= {self.last} + 1"
            )
        return self

    def split_of(self, seasons: pd.Series) -> pd.Series:
        """Return each season's split (train, val or test), NA for a season outside every split."""
        split = pd.Series(pd.NA, index=seasons.index, dtype="object")
        split[(seasons >= self.first) & (seasons < self.val)] = names.TRAIN
        split[(seasons >= self.val) & (seasons < self.test)] = names.VAL
        split[(seasons >= self.test) & (seasons <= self.last)] = names.TEST
        return split


@dataclass
class Built:
    """A feature folder's contents: tournament rows with their split, team-season table, scaler, manifest."""

    games: pd.DataFrame
    team_season: pd.DataFrame
    scaler: dict
    manifest: dict

    @property
    def feature_names(self) -> list[str]:
        """Return the features the model reads, in the order the scaler was fit on."""
        return self.scaler["features"]


def read_inputs(data: str, league: str, seed: int, workdir: Path) -> tuple[list[kaggle.LeagueFiles], bool]:
    """Read each league's files; with data='synthetic', generate them into `workdir` first."""
    leagues = kaggle.leagues_for(league)
    synthetic_data = data == names.SYNTHETIC
    folder = Path(workdir) if synthetic_data else Path(data)
    if synthetic_data:
        synthetic.write_league(folder, seed, leagues)
    return [kaggle.read_league(folder, lg) for lg in leagues], synthetic_data


def assemble(files: list[kaggle.LeagueFiles], synthetic_data: bool = False) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """Return all tournament rows (unsplit), the team-season table, and the data manifest.

    Box-score features are used only when every league has detailed results, so that all rows
    have the same columns.
    """
    use_box = all(f.detailed is not None for f in files)
    team_frames, game_frames = [], []
    for f in files:
        team = madness.features.team_season_features(f.regular, f.seeds, f.detailed if use_box else None)
        rows = madness.features.tournament_rows(f.tourney, team)
        team.insert(0, names.LEAGUE, f.league)
        rows.insert(0, names.LEAGUE, f.league)
        team_frames.append(team)
        game_frames.append(rows)
    manifest = {
        "synthetic": synthetic_data,
        "box_scores": use_box,
        "files": [entry for f in files for entry in f.manifest],
    }
    manifest["digest"] = kaggle.manifest_digest(manifest["files"])
    games = pd.concat(game_frames, ignore_index=True).sort_values(
        [names.SEASON, names.LEAGUE, names.T1_TEAM, names.T2_TEAM], ignore_index=True
    )
    return games, pd.concat(team_frames, ignore_index=True), manifest


def build(files: list[kaggle.LeagueFiles], seasons: Seasons, synthetic_data: bool = False) -> Built:
    """Split the tournament rows by `seasons` (rows outside them dropped); fit the scaler on the training rows.
    Raise UserError on seasons out of order, a split without games, or a game lacking a feature."""
    seasons.check()
    games, team_season, manifest = assemble(files, synthetic_data)
    games.insert(1, names.SPLIT, seasons.split_of(games[names.SEASON]))
    games = games.dropna(subset=[names.SPLIT]).reset_index(drop=True)
    _check_splits(games, files, seasons)
    features = madness.features.feature_columns(madness.features.team_feature_columns(team_season))
    check_complete(games, features)
    return Built(games, team_season, fit_scaler(games[games[names.SPLIT] == names.TRAIN], features), manifest)


def _check_splits(games: pd.DataFrame, files, seasons: Seasons) -> None:
    span = madness.features.season_span(pd.concat([f.tourney[names.SEASON] for f in files]))
    splits = [(names.TRAIN, seasons.first, seasons.val - 1), (names.VAL, seasons.val, seasons.test - 1)]
    if seasons.has_test:
        splits.append((names.TEST, seasons.test, seasons.last))
    for split, low, high in splits:
        if not (games[names.SPLIT] == split).any():
            raise UserError(
                f"no tournament games for the {split} seasons {low}-{high}; tournaments in the data: {span}"
            )


def check_complete(games: pd.DataFrame, features: list[str]) -> None:
    """Raise UserError naming the first game that lacks one of `features` (no regular-season features or seed)."""
    missing = games[features].isna().any(axis=1)
    if missing.any():
        row = games[missing].iloc[0]
        raise UserError(
            f"tournament game in season {row[names.SEASON]} between teams {row[names.T1_TEAM]} and {row[names.T2_TEAM]} "
            "has no regular-season features or seed; check that the files cover the same seasons"
        )


def fit_scaler(train: pd.DataFrame, features: list[str]) -> dict:
    """Return the standardisation fit on training rows only; constant columns keep scale 1."""
    values = train[features].to_numpy(dtype="float64")
    mean = values.mean(axis=0)
    scale = values.std(axis=0)
    scale[scale == 0] = 1.0
    return {"features": list(features), "mean": mean.tolist(), "scale": scale.tolist()}


def write(built: Built, folder: Path) -> list[Path]:
    """Write the feature folder (games, team-season table, scaler, manifest) into `folder`; return the paths written."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    built.games.to_csv(folder / names.GAMES_FILE, index=False, float_format="%.17g", lineterminator="\n")
    built.team_season.to_csv(folder / names.TEAM_SEASON_FILE, index=False, float_format="%.17g", lineterminator="\n")
    (folder / names.SCALER_FILE).write_text(json.dumps(built.scaler, indent=1))
    (folder / names.MANIFEST_FILE).write_text(json.dumps(built.manifest, indent=1))
    return [folder / name for name in names.FEATURE_FILES]


def load(folder: Path) -> Built:
    """Read a feature folder written by `write` (an ingest run's `features` artifacts)."""
    folder = Path(folder)
    missing = [name for name in names.FEATURE_FILES if not (folder / name).is_file()]
    if missing:
        raise UserError(
            f"feature folder {folder} lacks {', '.join(missing)}; give the features of an ingest run (runs:/<id>/features)"
        )
    return Built(
        games=pd.read_csv(folder / names.GAMES_FILE),
        team_season=pd.read_csv(folder / names.TEAM_SEASON_FILE),
        scaler=json.loads((folder / names.SCALER_FILE).read_text()),
        manifest=json.loads((folder / names.MANIFEST_FILE).read_text()),
    )


def split_xy(games: pd.DataFrame, features: list[str], split: str) -> tuple[pd.DataFrame, np.ndarray]:
    """Return the rows of `split`: their features as float64 and their targets as an array."""
    part = games[games[names.SPLIT] == split]
    return part[features].astype("float64"), part[names.TARGET].to_numpy(dtype="float64")
