"""Is a stored result whole? A finished run is reused, listed or registered only when what it
claims to hold is there: files can be deleted or cut short after the run ended (a cleaned disk,
an interrupted copy, a bucket lifecycle rule), and the tracking store does not notice.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import yaml

MLMODEL = "MLmodel"
# libyaml's safe loader when PyYAML has it: the same documents, parsed several times faster.
SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
ARCHIVES = (".keras", ".zip")  # a cut-short archive is no longer recognised as one: know them by name


def model_problem(folder: Path) -> str | None:
    """What is wrong with a downloaded MLflow model folder, or None when it is whole: its MLmodel
    parses, every file its python_function flavor names is there and not empty, and every zip
    archive in it (the Keras network) passes its checksums."""
    folder = Path(folder)
    spec_file = folder / MLMODEL
    if not spec_file.is_file():
        return f"its model has no {MLMODEL} file"
    try:
        spec = yaml.load(spec_file.read_text(), Loader=SAFE_LOADER)
        flavor = spec["flavors"]["python_function"]
    except (yaml.YAMLError, TypeError, KeyError, UnicodeDecodeError):
        return f"its model's {MLMODEL} file is unreadable"
    for name in named_files(flavor):
        path = folder / name
        if not path.exists() or (path.is_file() and path.stat().st_size == 0):
            return f"its model lacks {name}"
    for path in sorted(folder.rglob("*")):
        if path.is_file() and (path.suffix in ARCHIVES or zipfile.is_zipfile(path)) and archive_broken(path):
            return f"its model's {path.relative_to(folder)} is damaged"
    return None


def named_files(flavor: dict) -> list[str]:
    names = [flavor.get("python_model"), flavor.get("code"), *(flavor.get("env") or {}).values()]
    names += [artifact.get("path") for artifact in (flavor.get("artifacts") or {}).values()]
    return [name for name in names if name]


def archive_broken(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path) as archive:
            return archive.testzip() is not None
    except (zipfile.BadZipFile, OSError, EOFError):
        return True


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_END = b"IEND\xaeB`\x82"  # the IEND chunk and its CRC: every whole PNG ends with these bytes


def png_whole(path: Path) -> bool:
    """A PNG file that starts as one and was not cut short."""
    try:
        data = Path(path).read_bytes()
    except OSError:
        return False
    return data.startswith(PNG_SIGNATURE) and data.endswith(PNG_END)


def missing_files(present: dict[str, int], required: list[str]) -> list[str]:
    """Which of `required` (paths) are absent or empty in `present` (path -> size in bytes)."""
    return [name for name in required if not present.get(name)]
