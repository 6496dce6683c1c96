"""Read Kaggle's March Machine Learning Mania files by their real names, with schema checks.

Every problem found becomes a one-line `UserError` naming the file and column at fault.
"""

from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from madness import names as n
from madness.errors import UserError

KAGGLE_COMPETITION = "march-machine-learning-mania-2024"
DOWNLOAD_HINT = f"kaggle competitions download -c {KAGGLE_COMPETITION}"

_COMPACT_COLUMNS = {
    n.SEASON: "int", n.DAYNUM: "int", n.WTEAM: "int", n.WSCORE: "int",
    n.LTEAM: "int", n.LSCORE: "int", n.WLOC: "loc", n.NUMOT: "int",
}
_DETAILED_COLUMNS = {
    **_COMPACT_COLUMNS,
    **{f"{side}{stat}": "int" for side in ("W", "L") for stat in n.BOX_STATS},
}

# stem -> (required?, {column: kind})
SCHEMAS: dict[str, tuple[bool, dict[str, str]]] = {
    n.REGULAR_COMPACT: (True, _COMPACT_COLUMNS),
    n.REGULAR_DETAILED: (False, _DETAILED_COLUMNS),
    n.TOURNEY_COMPACT: (True, _COMPACT_COLUMNS),
    n.TOURNEY_SEEDS: (True, {n.SEASON: "int", n.SEED: "seed", n.TEAM_ID: "int"}),
    n.TEAMS: (True, {n.TEAM_ID: "int", n.TEAM_NAME: "str"}),
}
_LOCATIONS = {"H", "A", "N"}
_SEED_PATTERN = r"^[WXYZ](0[1-9]|1[0-6])[ab]?$"


@dataclass
class LeagueFiles:
    """One league's frames, as read and checked. `detailed` is None when Kaggle's file is absent."""

    league: str
    regular: pd.DataFrame
    tourney: pd.DataFrame
    seeds: pd.DataFrame
    teams: pd.DataFrame
    detailed: pd.DataFrame | None = None
    manifest: list[dict] = field(default_factory=list)


def file_name(league: str, stem: str) -> str:
    return f"{league}{stem}.csv"


def decode(raw: bytes) -> str:
    """Kaggle ships some name files in Windows-1252; everything else is UTF-8."""
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        return raw.decode("cp1252")


def check_columns(frame: pd.DataFrame, columns: dict[str, str], source: str) -> pd.DataFrame:
    """Check presence and type of each column; return the frame with those columns typed."""
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise UserError(
            f"{source}: missing column {missing[0]!r}; expected columns: {', '.join(columns)}"
        )
    out = frame.copy()
    for column, kind in columns.items():
        out[column] = _typed(out[column], kind, f"{source}: column {column!r}")
    return out


def _typed(values: pd.Series, kind: str, where: str) -> pd.Series:
    if kind == "int":
        if pd.api.types.is_integer_dtype(values) and not pd.api.types.is_bool_dtype(values):
            return values.astype("int64")
        if pd.api.types.is_bool_dtype(values):  # pandas reads True/False as booleans: not integers
            values = values.astype(str)
        numbers = pd.to_numeric(values, errors="coerce")
        bad = ~np.isfinite(numbers) | (numbers != np.floor(numbers))
        if bad.any():
            raise UserError(f"{where} must hold integers, found {values[bad].iloc[0]!r} at row {_row(bad)}")
        return numbers.astype("int64")
    text = values.astype("string").str.strip()
    if kind == "loc":
        bad = ~text.isin(_LOCATIONS)
        if bad.any():
            raise UserError(f"{where} must be one of H, A, N, found {values[bad].iloc[0]!r} at row {_row(bad)}")
    elif kind == "seed":
        bad = ~text.str.match(_SEED_PATTERN).fillna(False).astype(bool)
        if bad.any():
            raise UserError(f"{where} must look like W01 or X16a, found {values[bad].iloc[0]!r} at row {_row(bad)}")
    return text.astype(object)


def _row(bad: pd.Series) -> int:
    """The file line of the first bad value: line 1 is the header."""
    return int(np.argmax(bad.to_numpy())) + 2


def read_checked(path: Path, columns: dict[str, str]) -> tuple[pd.DataFrame, dict]:
    """Read one CSV, check its schema, and describe it for the data manifest."""
    raw = path.read_bytes()
    try:
        with warnings.catch_warnings():
            # Rows longer than the header: pandas would take the first field as an index (shifting
            # every column) or, with index_col=False, drop the extra fields with only this warning.
            warnings.simplefilter("error", pd.errors.ParserWarning)
            frame = pd.read_csv(io.StringIO(decode(raw)), keep_default_na=False, index_col=False)
    except pd.errors.ParserWarning:
        raise UserError(f"{path.name}: rows have more fields than the header; expected columns: {', '.join(columns)}") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        raise UserError(f"{path.name}: not a readable CSV file ({str(err).splitlines()[0]})") from None
    frame = check_columns(frame, columns, path.name)
    entry = {"file": path.name, "sha256": hashlib.sha256(raw).hexdigest(), "rows": len(frame)}
    return frame, entry


def read_league(folder: Path, league: str) -> LeagueFiles:
    """Read one league's files from a folder of Kaggle CSVs."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"data folder {str(folder)!r} does not exist; give 'synthetic' or a folder of Kaggle CSVs")
    frames: dict[str, pd.DataFrame | None] = {}
    manifest = []
    for stem, (required, columns) in SCHEMAS.items():
        path = folder / file_name(league, stem)
        if not path.is_file():
            if required:
                raise UserError(f"missing file {path.name} in {folder}; get Kaggle's files with: {DOWNLOAD_HINT}")
            frames[stem] = None
            continue
        frames[stem], entry = read_checked(path, columns)
        manifest.append(entry)
    return LeagueFiles(
        league=league,
        regular=frames[n.REGULAR_COMPACT],
        detailed=frames[n.REGULAR_DETAILED],
        tourney=frames[n.TOURNEY_COMPACT],
        seeds=frames[n.TOURNEY_SEEDS],
        teams=frames[n.TEAMS],
        manifest=manifest,
    )


def leagues_for(choice: str) -> tuple[str, ...]:
    if choice not in n.LEAGUE_CHOICES:
        raise UserError(f"unknown league {choice!r}; accepted: {', '.join(n.LEAGUE_CHOICES)}")
    return n.LEAGUES if choice == "both" else (choice,)


def manifest_digest(manifest: list[dict]) -> str:
    """One hash for a set of input files: what caching and reruns compare."""
    lines = sorted(f"{e['file']}\t{e['sha256']}" for e in manifest)
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()
