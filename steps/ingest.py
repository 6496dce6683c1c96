"""Ingest: Kaggle files (or the synthetic league) -> tournament feature tables, split by season.

Its params are madness.cli.DATA_PARAMS (and MLproject); what it logs is the README's table "What
each run records": the tables under `features/`, with `manifest.json` naming each input file's
sha256, and the splits as MLflow datasets.

    mlflow run . -e ingest -P data=../shared/data/mmlm2024 -P league=W --env-manager local
    python -m steps.ingest --league W --data ../shared/data/mmlm2024
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import mlflow

from madness import dataset, names
from madness.cli import DATA_PARAMS, parse
from steps._data import build_features, log_data, seasons_of
from steps._entry import entry_point, run_as_script, start_run

PARAMS = DATA_PARAMS


@entry_point
def main(argv=None):
    """Run the ingest entry point: parse its params, build the features, log them (see the module docstring)."""
    values, raw = parse("ingest", __doc__.splitlines()[0], PARAMS, argv)
    seasons_of(values)  # inverted seasons stop here, before any file is read
    with start_run("ingest", raw) as run, tempfile.TemporaryDirectory() as tmp:
        built = build_features(values, Path(tmp))
        folder = Path(tmp) / names.FEATURES_DIR
        dataset.write(built, folder)
        # Everything is built and written before the first artifact is logged: no half-written output.
        mlflow.log_artifacts(str(folder), names.FEATURES_DIR)
        log_data(built, source=values["data"])
        mlflow.log_metrics(
            {
                f"rows_{split}": int((built.games[names.SPLIT] == split).sum())
                for split in (names.TRAIN, names.VAL, names.TEST)
            }
        )
    print(
        f"ingest run {run.info.run_id}: {len(built.games)} tournament rows, {len(built.feature_names)} features; "
        f"features at runs:/{run.info.run_id}/{names.FEATURES_DIR}"
    )


if __name__ == "__main__":
    run_as_script(main)
