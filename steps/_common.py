"""What every entry point shares: one-line user errors, clean run endings, data loading and logging."""

from __future__ import annotations

import functools
import os
import signal
import warnings
import subprocess
import sys
import tempfile
from pathlib import Path

import mlflow
import mlflow.pyfunc
import yaml

from madness import dataset as D
from madness import names as n
from madness.errors import UserError


PROJECT_ROOT = Path(__file__).resolve().parent.parent


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def entry_point(main):
    """Run `main`; a UserError prints one line and exits 1; any failure ends the active run FAILED."""

    @functools.wraps(main)
    def wrapper(argv=None):
        signal.signal(signal.SIGTERM, _raise_interrupt)
        # TensorFlow's C++ start-up chatter (no CUDA here, CPU features) would bury our one-line errors.
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        try:
            return main(argv)
        except UserError as err:
            _end_active_run("FAILED")
            print(f"error: {err}", file=sys.stderr)
            sys.exit(1)
        except KeyboardInterrupt:
            _end_active_run("KILLED")
            print("error: interrupted", file=sys.stderr)
            sys.exit(130)
        except BaseException:
            _end_active_run("FAILED")
            raise

    return wrapper


def _end_active_run(status: str) -> None:
    while mlflow.active_run() is not None:
        mlflow.end_run(status)


def git_dirty(path: Path = Path(".")) -> str | None:
    """'true' when the working tree has uncommitted changes, None outside a git repository."""
    try:
        out = subprocess.run(
            ["git", "status", "--porcelain"], cwd=path, capture_output=True, text=True, check=True
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    return "true" if out.strip() else "false"


def start_run(entry: str, raw_params: dict[str, str], **kwargs):
    """Start (or, under `mlflow run`, resume) the run; log params once, as given, and source tags."""
    run = mlflow.start_run(**kwargs)
    mlflow.log_params(raw_params)
    tags = {n.TAG_ENTRY_POINT: entry}
    dirty = git_dirty()
    if dirty is not None:
        tags[n.TAG_DIRTY] = dirty
    mlflow.set_tags(tags)
    return run


def seasons_of(values: dict) -> D.Seasons:
    return D.Seasons(values["first_season"], values["val_season"], values["test_season"], values["last_season"]).check()


def build_features(values: dict, workdir: Path) -> D.Built:
    files, synthetic_data = D.read_inputs(values["data"], values["league"], values["seed"], Path(workdir) / "raw")
    return D.build(files, seasons_of(values), synthetic_data)


def load_features(uri: str, workdir: Path) -> D.Built:
    try:
        local = mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(workdir))
    except Exception as err:  # MLflow raises several types for a bad URI
        raise UserError(f"cannot read features from {uri!r}: {str(err).splitlines()[0]}") from None
    return D.load(Path(local))


def log_data(built: D.Built, source: str) -> None:
    """Tag the data's origin and digest, log the manifest and each split as an MLflow dataset."""
    mlflow.set_tags({
        n.TAG_SYNTHETIC: str(built.manifest["synthetic"]).lower(),
        n.TAG_DATA_DIGEST: built.manifest["digest"],
    })
    mlflow.log_dict(built.manifest, f"{n.FEATURES_DIR}/{n.MANIFEST_FILE}")
    for split in (n.TRAIN, n.VAL, n.TEST):
        rows = built.games[built.games[n.SPLIT] == split]
        with warnings.catch_warnings():  # MLflow warns that a plain path "can be interpreted in multiple ways"
            warnings.simplefilter("ignore", UserWarning)
            dataset = mlflow.data.from_pandas(rows, source=source, name=f"tournament_{split}", targets=n.TARGET)
        mlflow.log_input(dataset, context=split, tags={"data_digest": built.manifest["digest"]})


def project_pins() -> list[str]:
    """conda.yaml's direct pins: the served model needs the same packages as training."""
    env = yaml.safe_load((PROJECT_ROOT / "conda.yaml").read_text())
    pip = next(dep["pip"] for dep in env["dependencies"] if isinstance(dep, dict))
    return [line for line in pip if not line.startswith("-")]


def temp_dir():
    return tempfile.TemporaryDirectory(prefix="madness-")


def load_model(uri: str):
    """Load a pyfunc model; return it with the id of the run that made it and its input columns."""
    try:
        info = mlflow.models.get_model_info(uri)
        model = mlflow.pyfunc.load_model(uri)
    except Exception as err:  # MLflow raises several types for a missing run, model or alias
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UserError(f"cannot load model {uri!r} (give runs:/<run id>/model or models:/<name>@<alias>): {first}") from None
    return model, info.run_id, model.metadata.get_input_schema().input_names()


def require_columns(frame, columns: list[str], what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise UserError(
            f"the model needs feature {missing[0]!r} (and {len(missing) - 1} more) that {what} lacks; "
            "box-score features need *RegularSeasonDetailedResults.csv for every league"
        )
