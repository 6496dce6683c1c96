"""Data as the steps read and log it: season splits from params, features built or downloaded,
datasets logged with a source that resolves on every store, the model's inputs checked."""

from __future__ import annotations

import sys
import time
import urllib.parse
import warnings
from pathlib import Path

import mlflow
from mlflow.exceptions import MlflowException
from mlflow.store.artifact.mlflow_artifacts_repo import MlflowArtifactsRepository
from mlflow.store.artifact.runs_artifact_repo import RunsArtifactRepository
from mlflow.types.schema import DataType

import madness.dataset
from madness import names
from madness.errors import UserError, first_line
from steps._failures import without_credentials


def seasons_of(values: dict) -> madness.dataset.Seasons:
    """Return the split seasons the params give; raise UserError unless first < val < test <= last + 1."""
    return madness.dataset.Seasons(
        values["first_season"], values["val_season"], values["test_season"], values["last_season"]
    ).check()


def build_features(values: dict, workdir: Path) -> madness.dataset.Built:
    """Build the features the data params name (the synthetic league generated under `workdir`); raise UserError
    on bad data."""
    files, synthetic_data = madness.dataset.read_inputs(
        values["data"], values["league"], values["seed"], Path(workdir) / "raw"
    )
    return madness.dataset.build(files, seasons_of(values), synthetic_data)


def load_features(uri: str, workdir: Path) -> madness.dataset.Built:
    """Download the feature folder at `uri` into `workdir` and read it; raise UserError when it cannot be fetched or
    lacks a file."""
    try:
        local = mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(workdir))
    except Exception as err:  # noqa: BLE001 - MLflow raises several types for a bad URI
        raise UserError(f"cannot read features from {uri!r}: {first_line(err)}") from None
    return madness.dataset.load(Path(local))


def features_source(features_uri: str) -> str:
    """Return where the rows of a features folder (an ingest run's runs:/<id>/features, or any artifact
    URI) can be fetched: its games.csv, as a URI MLflow's dataset sources resolve on every store.

    A local path and an s3:// object resolve as they are; behind a server that proxies artifacts
    (mlflow-artifacts:, which no dataset source accepts) it is the server's own HTTP address of the
    file, so the UI's dataset view links to it.
    """
    folder = (
        RunsArtifactRepository.get_underlying_uri(features_uri) if features_uri.startswith("runs:/") else features_uri
    )
    games = f"{folder.rstrip('/')}/{names.GAMES_FILE}"
    if urllib.parse.urlparse(games).scheme == "mlflow-artifacts":
        games = without_credentials(MlflowArtifactsRepository.resolve_uri(games, mlflow.get_tracking_uri()))
    return games


def log_manifest(manifest: dict) -> None:
    """Tag the data's origin and digest, and log the manifest."""
    mlflow.set_tags(
        {names.TAG_SYNTHETIC: str(manifest["synthetic"]).lower(), names.TAG_DATA_DIGEST: manifest["digest"]}
    )
    mlflow.log_dict(manifest, f"{names.FEATURES_DIR}/{names.MANIFEST_FILE}")


def log_data(built: madness.dataset.Built, source: str) -> None:
    """Log the manifest (log_manifest) and each split as an MLflow dataset. `source`: the data folder
    (or 'synthetic') the features were built from, or features_source()."""
    log_manifest(built.manifest)
    for split in (names.TRAIN, names.VAL, names.TEST):
        rows = built.games[built.games[names.SPLIT] == split]
        if rows.empty:  # no test seasons: a model for the coming tournament
            continue
        # MLflow warns that a plain path "can be interpreted in multiple ways" (each way reads the
        # same file) and, as log_input infers the table's schema, that integer columns cannot hold
        # missing values (a hint for models scoring such columns): neither applies to these tables.
        with warnings.catch_warnings():
            warnings.filterwarnings(
                "ignore", "The specified dataset source can be interpreted in multiple ways", UserWarning
            )
            warnings.filterwarnings("ignore", "Hint: Inferred schema contains integer column", UserWarning)
            dataset = mlflow.data.from_pandas(rows, source=source, name=f"tournament_{split}", targets=names.TARGET)
            log_input_once_stored(dataset, split, built.manifest["digest"])


def log_input_once_stored(dataset, split: str, digest: str, attempts: int = 4) -> None:
    """Log the dataset input. Two runs logging the same new dataset at once race in MLflow's SQL
    store (it looks the dataset up, then inserts it): on PostgreSQL the loser gets a unique-key
    violation. Logging again then finds the winner's row and links it."""
    for attempt in range(attempts):
        try:
            mlflow.log_input(dataset, context=split, tags={"data_digest": digest})
            return
        except MlflowException as err:
            marks = ("UniqueViolation", "UNIQUE constraint failed", "Duplicate entry")  # PostgreSQL, SQLite, MySQL
            if attempt == attempts - 1 or not any(mark in str(err) for mark in marks):
                raise
            time.sleep(0.2 * (attempt + 1))


def predict_rows(model, rows, data: str):
    """Return the model's probabilities for `rows`; refuse in one line data (named `data`) that lacks
    an input column of the model or has a row without one. The steps hold every feature as float64:
    each column is cast to the model's input type, where a seed number is a `long` (exact); a model
    whose columns are untyped (`any`, logged before the signature was typed) takes them as they are."""
    schema = model.metadata.get_input_schema()
    features = schema.input_names()
    missing = [c for c in features if c not in rows.columns]
    if missing:
        raise UserError(
            f"the model needs feature {missing[0]!r} (and {len(missing) - 1} more) that the data at {data} lacks; "
            "box-score features need *RegularSeasonDetailedResults.csv for every league"
        )
    madness.dataset.check_complete(rows, features)
    types = {spec.name: spec.type.to_numpy() for spec in schema.inputs if isinstance(spec.type, DataType)}
    return model.predict(rows[features].astype(types))


def read_data_for_model(values: dict, model_run: str | None, workdir: Path):
    """Tag the model's run, read and assemble the data, tag and log its manifest (what evaluate and
    predict share); return (league files, all tournament rows, team-season table)."""
    if model_run:
        mlflow.set_tag(names.TAG_EVALUATED, model_run)
    files, synthetic_data = madness.dataset.read_inputs(
        values["data"], values["league"], values["seed"], Path(workdir) / "raw"
    )
    games, team_season, manifest = madness.dataset.assemble(files, synthetic_data)
    log_manifest(manifest)
    if model_run:
        say_if_other_data(values, manifest, model_run)
    return files, games, team_season


def say_if_other_data(values: dict, manifest: dict, model_run: str) -> None:
    """Tag whether the data read are those the model's run was trained on (their digests), and say
    so in one line when they are not: a model trained on real data scored on the synthetic league,
    or on other seasons or leagues, is scored on data it never saw the like of."""
    trained = mlflow.MlflowClient().get_run(model_run).data.tags
    digest = trained.get(names.TAG_DATA_DIGEST)
    if digest is None:  # a model logged by other code: nothing to compare
        return
    same = digest == manifest["digest"]
    mlflow.set_tag(names.TAG_DATA_MATCHES_MODEL, str(same).lower())
    if not same:
        kind = {"true": "the synthetic league", "false": "real data"}.get(
            trained.get(names.TAG_SYNTHETIC), "other data"
        )
        print(
            f"note: the data read (data={values['data']}, league={values['league']}, digest {manifest['digest'][:12]}) "
            f"are not those model run {model_run} was trained on ({kind}, digest {digest[:12]})",
            file=sys.stderr,
            flush=True,
        )
