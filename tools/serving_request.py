"""A request for a served model, built from real feature rows: the first test games of the features the
model was trained on (its run's `features_uri`, an ingest run's), in the model's input columns, as the
JSON `mlflow models serve` takes ({"dataframe_split": ...}).

    python tools/serving_request.py models:/fabric_madness@champion --rows 3 > request.json
    curl -s http://127.0.0.1:5001/invocations -H 'Content-Type: application/json' -d @request.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from madness import names  # noqa: E402


def request(model_uri: str, rows: int) -> dict:
    """Return the model's input columns for the first `rows` test games of its run's features."""
    import mlflow
    import pandas as pd

    info = mlflow.models.get_model_info(model_uri)
    columns = info.signature.inputs.input_names()
    features_uri = mlflow.MlflowClient().get_run(info.run_id).data.params.get("features_uri", "").strip("'")
    if not features_uri:
        sys.exit(
            f"error: the run of {model_uri} built its features itself (no features_uri); "
            "give the model of a run trained from an ingest run's features, e.g. a sweep's"
        )
    with tempfile.TemporaryDirectory() as tmp:
        games = pd.read_csv(mlflow.artifacts.download_artifacts(f"{features_uri}/{names.GAMES_FILE}", dst_path=tmp))
    frame = games[games[names.SPLIT] == names.TEST].head(rows)[columns]
    return {"dataframe_split": frame.to_dict(orient="split", index=False)}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_uri", help="models:/<name>@<alias> or runs:/<run id>/model")
    parser.add_argument("--rows", type=int, default=3, help="test games in the request")
    args = parser.parse_args(argv)
    print(json.dumps(request(args.model_uri, args.rows)))


if __name__ == "__main__":
    main()
