"""Read Kaggle's March Machine Learning Mania files by their real names, with schema checks.

Every problem found becomes a one-line `UserError` naming the file and column at fault: a file
that is missing, a folder or unreadable, bytes neither UTF-8 nor Windows-1252 (or UTF-16 text), a
bad value, a key (declared in `SCHEMAS`) shared by two rows, or a value whose meaning breaks a
rule of `madness.schemas` (a range, the winner above the loser, a team unknown to the teams file).
"""

from __future__ import annotations

import hashlib
import io
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

from madness import names
from madness.errors import UserError, first_line

KAGGLE_COMPETITION = "march-machine-learning-mania-2024"
DOWNLOAD_HINT = f"kaggle competitions download -c {KAGGLE_COMPETITION}"

_COMPACT_COLUMNS = {
    names.SEASON: "int",
    names.DAYNUM: "int",
    names.WTEAM: "int",
    names.WSCORE: "int",
    names.LTEAM: "int",
    names.LSCORE: "int",
    names.WLOC: "loc",
    names.NUMOT: "int",
}
_DETAILED_COLUMNS = {
    **_COMPACT_COLUMNS,
    **{f"{side}{stat}": "int" for side in ("W", "L") for stat in names.BOX_STATS},
}


class Schema(NamedTuple):
    """One Kaggle file: whether it must be there, its columns by kind, and its keys.

    Each key is a set of columns that no two rows may share: a repeated key is a repeated game or
    a team seeded twice, which would silently double rows or break a one-to-one merge downstream.
    """

    required: bool
    columns: dict[str, str]
    keys: tuple[tuple[str, ...], ...]


# A team may play twice on one day (4 such pairs in the real women's regular season), so a game is
# known by both its teams, not by one team and the day.
_GAME_KEY = (names.SEASON, names.DAYNUM, names.WTEAM, names.LTEAM)

SCHEMAS: dict[str, Schema] = {
    names.REGULAR_COMPACT: Schema(True, _COMPACT_COLUMNS, (_GAME_KEY,)),
    names.REGULAR_DETAILED: Schema(False, _DETAILED_COLUMNS, (_GAME_KEY,)),
    names.TOURNEY_COMPACT: Schema(True, _COMPACT_COLUMNS, (_GAME_KEY,)),
    names.TOURNEY_SEEDS: Schema(
        True,
        {names.SEASON: "int", names.SEED: "seed", names.TEAM_ID: "int"},
        ((names.SEASON, names.TEAM_ID), (names.SEASON, names.SEED)),
    ),
    names.TEAMS: Schema(True, {names.TEAM_ID: "int", names.TEAM_NAME: "str"}, ((names.TEAM_ID,),)),
}

# The text kinds' forms: a pattern each value must match whole, and what an error says it must do.
_TEXT_FORMS = {
    "loc": (r"[HAN]", "be one of H, A, N"),
    "seed": (r"[WXYZ](0[1-9]|1[0-6])[ab]?", "look like W01 or X16a"),
}


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
    """Return the league's Kaggle file name, e.g. ('W', 'NCAATourneySeeds') -> 'WNCAATourneySeeds.csv'."""
    return f"{league}{stem}.csv"


ENCODINGS = "UTF-8 or Windows-1252"

# Checked longest first: a UTF-32 LE mark starts with the UTF-16 LE one.
_WIDE_MARKS = (
    (b"\xff\xfe\x00\x00", "UTF-32"),
    (b"\x00\x00\xfe\xff", "UTF-32"),
    (b"\xff\xfe", "UTF-16"),
    (b"\xfe\xff", "UTF-16"),
)


def decode(raw: bytes, source: str) -> str:
    """Return `raw` as text: Kaggle ships some name files in Windows-1252, the rest in UTF-8; refuse any other."""
    # UTF-16 text (Excel's 'Unicode Text') decodes as UTF-8 full of NUL characters, which pandas
    # would read as one strange column: name the encoding instead of a missing column.
    wide = _wide_encoding(raw)
    if wide:
        raise UserError(
            f"{source}: the file is {wide}; files must be {ENCODINGS}: save it as UTF-8 (Excel: 'CSV UTF-8')"
        )
    nul = raw.find(b"\x00")
    if nul >= 0:
        raise UserError(
            f"{source}: NUL byte at {_place(raw, nul)}: not a text CSV file; files must be {ENCODINGS} text"
        )
    try:  # not utf-8-sig, whose error offsets skip the byte order mark: it is removed here instead
        return raw.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as err:
        utf8_start = err.start
    try:
        return raw.decode("cp1252")
    except UnicodeDecodeError as err:
        bad = _byte_at(raw, err.start)
        # A UTF-8 file with one stray byte fails Windows-1252 elsewhere, on a valid UTF-8 character.
        if utf8_start != err.start:
            bad = f"{bad} (as UTF-8: {_byte_at(raw, utf8_start)})"
        raise UserError(
            f"{source}: cannot decode {bad}: it is neither UTF-8 nor Windows-1252; files must be {ENCODINGS}"
        ) from None


def _wide_encoding(raw: bytes) -> str | None:
    for mark, name in _WIDE_MARKS:
        if raw.startswith(mark):
            return name
    # Without a byte order mark: Latin text in UTF-16 has a NUL in one byte of nearly every pair.
    even, odd = raw[0::2].count(0), raw[1::2].count(0)
    if max(even, odd) > len(raw) // 4 and min(even, odd) * 10 < max(even, odd):
        return "UTF-16"
    return None


def _byte_at(raw: bytes, offset: int) -> str:
    return f"byte 0x{raw[offset]:02X} at {_place(raw, offset)}"


def _place(raw: bytes, offset: int) -> str:
    line = raw.count(b"\n", 0, offset) + 1
    return f"offset {offset} (line {line})"


def check_columns(frame: pd.DataFrame, columns: dict[str, str], source: str) -> pd.DataFrame:
    """Check presence and type of each column; return the frame with those columns typed."""
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise UserError(f"{source}: missing column {missing[0]!r}; expected columns: {', '.join(columns)}")
    out = frame.copy()
    for column, kind in columns.items():
        out[column] = _typed(out[column], kind, f"{source}: column {column!r}")
    return out


def _typed(values: pd.Series, kind: str, where: str) -> pd.Series:
    if kind == "int":
        if pd.api.types.is_integer_dtype(values):  # never a boolean column, which is not an integer dtype
            return values.astype("int64")
        if pd.api.types.is_bool_dtype(values):  # pandas reads True/False as booleans: not integers
            values = values.astype(str)
        numbers = pd.to_numeric(values, errors="coerce")
        _refuse(~np.isfinite(numbers) | (numbers != np.floor(numbers)), values, f"{where} must hold integers")
        # Beyond int64, pandas would wrap the value round to another number.
        _refuse(numbers.abs() >= 2.0**63, values, f"{where} must hold integers of at most 18 digits")
        return numbers.astype("int64")
    text = values.astype("string").str.strip()
    if kind in _TEXT_FORMS:
        pattern, rule = _TEXT_FORMS[kind]
        _refuse(~text.str.fullmatch(pattern).fillna(False).astype(bool), values, f"{where} must {rule}")
    return text.astype(object)


def _refuse(bad: pd.Series, values: pd.Series, rule: str) -> None:
    """Raise UserError naming the first bad value and its file line (line 1 is the header), if any is bad."""
    if bad.any():
        raise UserError(f"{rule}, found {values[bad].iloc[0]!r} at row {int(np.argmax(bad.to_numpy())) + 2}")


def read_checked(
    path: Path, columns: dict[str, str], keys: tuple[tuple[str, ...], ...] = ()
) -> tuple[pd.DataFrame, dict]:
    """Read one CSV, check its schema and keys, and describe it for the data manifest."""
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise UserError(
            f"{path.name}: cannot read {path} ({err.strerror or err}); files must be readable CSV files"
        ) from None
    frame = check_columns(_parse(decode(raw, path.name), path.name, columns), columns, path.name)
    for key in keys:
        check_unique(frame, key, path.name)
    return frame, {"file": path.name, "sha256": hashlib.sha256(raw).hexdigest(), "rows": len(frame)}


def _parse(text: str, source: str, columns: dict[str, str]) -> pd.DataFrame:
    try:
        with warnings.catch_warnings():
            # Rows longer than the header: pandas would take the first field as an index (shifting
            # every column) or, with index_col=False, drop the extra fields with only this warning.
            warnings.simplefilter("error", pd.errors.ParserWarning)
            # low_memory=False: a column is typed once, whole, so a stray value (a score beyond
            # int64) is refused by its check, not announced by a DtypeWarning.
            return pd.read_csv(io.StringIO(text), keep_default_na=False, index_col=False, low_memory=False)
    except pd.errors.ParserWarning:
        raise UserError(
            f"{source}: rows have more fields than the header; expected columns: {', '.join(columns)}"
        ) from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        raise UserError(f"{source}: not a readable CSV file ({first_line(err)})") from None


def check_unique(frame: pd.DataFrame, key: tuple[str, ...], source: str) -> None:
    """Refuse a key shared by two rows, naming how many keys repeat and the lines of the first."""
    repeated = frame.duplicated(list(key), keep=False)
    if not repeated.any():
        return
    count = len(frame.loc[repeated, list(key)].drop_duplicates())
    first = frame.loc[repeated, list(key)].iloc[0]
    lines = np.flatnonzero((frame[list(key)] == first).all(axis=1)) + 2  # line 1 is the header
    label = key[0] if len(key) == 1 else f"({', '.join(key)})"
    example = ", ".join(f"{column}={first[column]}" for column in key)
    raise UserError(
        f"{source}: {count} duplicated {'key' if count == 1 else 'keys'} {label}, e.g. {example} "
        f"on lines {_lines(lines)}; each {label} must appear on one row only"
    )


def _lines(lines: np.ndarray) -> str:
    shown = [str(line) for line in lines[:3]]
    if len(lines) > 3:
        return ", ".join(shown) + ", ..."
    return ", ".join(shown[:-1]) + " and " + shown[-1]


def read_league(folder: Path, league: str) -> LeagueFiles:
    """Read one league's files from a folder of Kaggle CSVs; check their form, then their meaning
    (madness.schemas), the teams file first as the others' team ids must be known to it."""
    # Imported here: pandera takes about half a second to import, which a step reading features
    # already built (a sweep's train runs) need not pay.
    from madness import schemas

    folder = _data_folder(Path(folder))
    paths = {stem: _kaggle_file(folder, file_name(league, stem), schema.required) for stem, schema in SCHEMAS.items()}
    frames: dict[str, pd.DataFrame | None] = dict.fromkeys(SCHEMAS)
    entries = {}
    for stem in sorted(SCHEMAS, key=lambda stem: stem != names.TEAMS):
        path = paths[stem]
        if path is None:
            continue
        frames[stem], entries[stem] = read_checked(path, SCHEMAS[stem].columns, SCHEMAS[stem].keys)
        schemas.validate(frames[stem], schemas.SCHEMAS[stem], path.name)
        if stem != names.TEAMS:
            team_ids = frames[names.TEAMS][names.TEAM_ID]
            schemas.validate(frames[stem], schemas.known_teams(stem, team_ids, paths[names.TEAMS].name), path.name)
    return LeagueFiles(
        league=league,
        regular=frames[names.REGULAR_COMPACT],
        detailed=frames[names.REGULAR_DETAILED],
        tourney=frames[names.TOURNEY_COMPACT],
        seeds=frames[names.TOURNEY_SEEDS],
        teams=frames[names.TEAMS],
        manifest=[entries[stem] for stem in SCHEMAS if stem in entries],  # in Kaggle's order
    )


def _data_folder(folder: Path) -> Path:
    if folder.is_dir():
        return folder
    accepted = "give 'synthetic' or a folder of Kaggle CSVs"
    if folder.exists():
        raise UserError(f"data {str(folder)!r} is a file, not a folder; {accepted}")
    raise UserError(f"data folder {str(folder)!r} does not exist; {accepted}")


def _kaggle_file(folder: Path, name: str, required: bool) -> Path | None:
    """Return the path of Kaggle's file `name` in `folder`; None if it is optional and absent."""
    path = folder / name
    if path.is_file():
        return path
    if path.is_dir():
        raise UserError(f"{name} in {folder} is a folder, not a file; give Kaggle's {name} as a CSV file")
    if path.exists():
        raise UserError(f"{name} in {folder} is not a regular file; give Kaggle's {name} as a CSV file")
    if path.is_symlink():
        raise UserError(
            f"{name} in {folder} is a link to {os.readlink(path)!r}, which does not exist; give Kaggle's {name} as a CSV file"
        )
    if required:
        raise UserError(f"missing file {name} in {folder}; get Kaggle's files with: {DOWNLOAD_HINT}")
    return None


def leagues_for(choice: str) -> tuple[str, ...]:
    """Return the leagues a `league` choice names (both: M and W); raise UserError for any other choice."""
    if choice not in names.LEAGUE_CHOICES:
        raise UserError(f"unknown league {choice!r}; accepted: {', '.join(names.LEAGUE_CHOICES)}")
    return names.LEAGUES if choice == "both" else (choice,)


def manifest_digest(manifest: list[dict]) -> str:
    """Return one hash for a set of input files: what caching and reruns compare."""
    lines = sorted(f"{e['file']}\t{e['sha256']}" for e in manifest)
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()
