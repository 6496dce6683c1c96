"""Is a stored result whole? A finished run is reused, listed or registered only when what it
claims to hold is there: files can be deleted or cut short after the run ended (a cleaned disk,
an interrupted copy, a bucket lifecycle rule), and the tracking store does not notice.
"""

from __future__ import annotations

import tempfile
import urllib.parse
import urllib.request
import zipfile
from pathlib import Path

import mlflow
import yaml

from madness import names
from madness.errors import first_line

# What a train run must hold to be reused, listed or registered (its metrics live in the store itself).
TRAIN_FILES = [names.LOSS_PLOT, f"{names.FEATURES_DIR}/{names.MANIFEST_FILE}"]
# What an ingest run must hold for a train run to read its features.
INGEST_FILES = [f"{names.FEATURES_DIR}/{name}" for name in names.FEATURE_FILES]

MLMODEL = "MLmodel"
# libyaml's safe loader when PyYAML has it: the same documents, parsed several times faster.
SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
ARCHIVES = (".keras", ".zip")  # a cut-short archive is no longer recognised as one: know them by name


def model_folder_problem(folder: Path) -> str | None:
    """Return what is wrong with a downloaded MLflow model folder, or None when it is whole: its MLmodel
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
    # The files it names: its model code, code, environment files and artifacts.
    named = [flavor.get("python_model"), flavor.get("code"), *(flavor.get("env") or {}).values()]
    named += [artifact.get("path") for artifact in (flavor.get("artifacts") or {}).values()]
    for name in filter(None, named):
        path = folder / name
        if not path.exists() or (path.is_file() and path.stat().st_size == 0):
            return f"its model lacks {name}"
    for path in sorted(folder.rglob("*")):
        if path.is_file() and (path.suffix in ARCHIVES or zipfile.is_zipfile(path)) and archive_broken(path):
            return f"its model's {path.relative_to(folder)} is damaged"
    return None


def archive_broken(path: Path) -> bool:
    """Return whether the zip archive at `path` is unreadable or fails its checksums."""
    try:
        with zipfile.ZipFile(path) as archive:
            return archive.testzip() is not None
    except (zipfile.BadZipFile, OSError, EOFError):
        return True


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_END = b"IEND\xaeB`\x82"  # the IEND chunk and its CRC: every whole PNG ends with these bytes


def png_whole(path: Path) -> bool:
    """Return whether the file is a PNG that starts as one and was not cut short."""
    try:
        data = Path(path).read_bytes()
    except OSError:
        return False
    return data.startswith(PNG_SIGNATURE) and data.endswith(PNG_END)


def local_path(uri: str) -> Path | None:
    """Return the folder a file: (or plain path) URI names on this machine; None for any other store."""
    location = urllib.parse.urlparse(uri)
    return Path(urllib.request.url2pathname(location.path)) if location.scheme in ("", "file") else None


def missing(client, run, required: list[str]) -> str | None:
    """Return a line naming the first `required` artifact the run lacks or holds empty, or None when all are there."""
    # A local store's artifacts are looked at where they lie: one stat each, not a listing per folder.
    root = local_path(run.info.artifact_uri)
    if root is not None:
        sizes = {name: (root / name).stat().st_size for name in required if (root / name).is_file()}
    else:
        folders = [None, *sorted({name.rsplit("/", 1)[0] for name in required if "/" in name})]
        listed = [info for folder in folders for info in client.list_artifacts(run.info.run_id, folder)]
        sizes = {info.path: info.file_size or 0 for info in listed if not info.is_dir}
    gone = [name for name in required if not sizes.get(name)]  # absent or empty
    return f"its artifact {gone[0]} is missing or empty" if gone else None


def local_model_folder(client, run) -> Path | None:
    """Return the folder of the run's logged model when it is on this machine's file system (a local store),
    else None. The model MLflow resolves runs:/<id>/model to: the logged model of that name the run made."""
    models = client.search_logged_models(
        experiment_ids=[run.info.experiment_id],
        filter_string=f"name = '{names.MODEL_DIR}' AND source_run_id = '{run.info.run_id}'",
        max_results=1,
    )
    return local_path(models[0].artifact_location) if models else None


def model_problem(client, run) -> str | None:
    """Return what is wrong with the run's logged model (it cannot be fetched, or model_folder_problem), or None."""
    # A local model is checked where it lies: fetching it first copies every file for nothing.
    folder = local_model_folder(client, run)
    if folder is not None:
        if not folder.is_dir():
            return f"its model cannot be fetched (its folder {folder} is gone)"
        return model_folder_problem(folder)
    with tempfile.TemporaryDirectory() as tmp:
        try:
            local = mlflow.artifacts.download_artifacts(f"runs:/{run.info.run_id}/{names.MODEL_DIR}", dst_path=tmp)
        except Exception as err:  # noqa: BLE001 - MLflow raises several types for a model whose files are gone
            return f"its model cannot be fetched ({first_line(err)})"
        return model_folder_problem(Path(local))


_whole: set[str] = set()  # runs found whole by this process: a sweep checks, then reports, the same runs


def train_run_problem(client, run_id: str, run=None) -> str | None:
    """Return what is wrong with the train run, or None when it is whole. `run`: the run, when the
    caller has it already (from a search), so it is not read again."""
    if run_id in _whole:
        return None
    run = run or client.get_run(run_id)
    problem = missing(client, run, TRAIN_FILES) or model_problem(client, run)
    if problem is None:
        _whole.add(run_id)
    return problem


def ingest_run_problem(client, run_id: str, run=None) -> str | None:
    """Return what is wrong with the ingest run's feature files, or None when they are all there."""
    return missing(client, run or client.get_run(run_id), INGEST_FILES)
