"""The served model: a pyfunc that takes the feature table's columns and returns P(team 1 wins), and
its loading by URI for the steps that score with it (evaluate, predict).

MLflow's Keras flavor only accepts tensor signatures; wrapping the saved Keras network (whose first
layer holds the fitted scaler) in a pyfunc gives a column signature, so callers pass a DataFrame
with named columns, in any order, and never rescale by hand. It is logged as MLflow's "model from
code": steps/served_model.py, which ends in `set_model(TournamentModel())`, is the model's code (this
module and madness/ ship beside it, code_paths), the feature names and the networks are its
artifacts; nothing is pickled.

A pair trained from several seeds is one model still: its networks are artifacts `keras_model`
(the first seed's, named as a single-seed model's), `keras_model_1`, `keras_model_2`, ..., and its
prediction is the mean of theirs.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import mlflow
import mlflow.pyfunc
import numpy as np
import pandas as pd

import madness.model
from madness.errors import UserError, first_line
from madness.names import SEED_NUM

KERAS_ARTIFACT = "keras_model"
FEATURES_ARTIFACT = "feature_names"  # the artifact listing the input columns (JSON), in the networks' order


def member_artifact(index: int) -> str:
    """Return the artifact name of the network at `index`: keras_model, then keras_model_1, keras_model_2, ..."""
    return KERAS_ARTIFACT if index == 0 else f"{KERAS_ARTIFACT}_{index}"


def signature(feature_names: list[str], model_input, probabilities):
    """Return the model's signature: the feature columns by name, typed as the feature table holds them
    (games.csv as pandas reads it; MLflow refuses int64 for a double column): seed numbers are integers
    (long), every other feature a double; the probabilities out."""
    from mlflow.models import ModelSignature, infer_signature
    from mlflow.types.schema import ColSpec, DataType, Schema

    inputs = Schema(
        [ColSpec(DataType.long if name.endswith(SEED_NUM) else DataType.double, name) for name in feature_names]
    )
    return ModelSignature(inputs=inputs, outputs=infer_signature(model_input, probabilities).outputs)


def load_network(path):
    """Load a saved Keras network, uncompiled, without TensorFlow's load-time notices (no CUDA drivers,
    oneDNN): nothing a user of the model can act on, and no environment variable stops them."""
    return madness.model.import_keras().models.load_model(path, compile=False)


def average(member_probabilities: np.ndarray) -> np.ndarray:
    """Return the members' mean prediction; one member's own, untouched (a single-seed model's bits)."""
    return member_probabilities[0] if len(member_probabilities) == 1 else member_probabilities.mean(axis=0)


class TournamentModel(mlflow.pyfunc.PythonModel):
    """The served model: P(team 1 wins) for the named feature columns, the mean of the pair's networks."""

    def __init__(self, feature_names: list[str] = (), networks: list = ()):
        self.feature_names = list(feature_names)
        self.networks = list(networks)

    @classmethod
    def from_files(cls, feature_names: list[str], keras_paths: list) -> TournamentModel:
        """Return the model as `mlflow.pyfunc.load_model` gives it, loaded from the saved network files:
        `train` scores through this, so its logged Brier is the served model's, bit for bit."""
        return cls(feature_names, [load_network(path) for path in keras_paths])

    def load_context(self, context):
        """Read the feature names (when an artifact holds them) and load every network among the model's artifacts."""
        # A model logged from code reads its columns from an artifact (model_config would also be logged
        # as run params); one pickled by an earlier version of train carries them in the object itself.
        if FEATURES_ARTIFACT in context.artifacts:
            self.feature_names = json.loads(Path(context.artifacts[FEATURES_ARTIFACT]).read_text())
        members = itertools.takewhile(lambda name: name in context.artifacts, map(member_artifact, itertools.count()))
        self.networks = [load_network(context.artifacts[name]) for name in members]

    def member_predictions(self, model_input: pd.DataFrame) -> np.ndarray:
        """Return one row of probabilities per network (madness.model.predict's)."""
        return np.stack([madness.model.predict(network, model_input[self.feature_names]) for network in self.networks])

    # The DataFrame hint tells MLflow there is no signature to infer from it (the signature is given
    # at logging) and spares the warning it gives for a predict without hints; validation is unchanged.
    def predict(self, context, model_input: pd.DataFrame, params=None):
        """Return P(team 1 wins) for each row of `model_input`: the mean of the networks' predictions."""
        return average(self.member_predictions(model_input))


def load_model(uri: str):
    """Load a pyfunc model; return it with the id of the run that made it. Refuse, in one line, one that
    cannot be loaded or has no input signature."""
    try:
        info = mlflow.models.get_model_info(uri)
        madness.model.import_keras()  # what the model's code imports, here without TensorFlow's load-time notices
        model = mlflow.pyfunc.load_model(uri)
    except Exception as err:  # noqa: BLE001 - MLflow raises several types for a missing run, model or alias
        raise UserError(
            f"cannot load model {uri!r} (give runs:/<run id>/model or models:/<name>@<alias>): {first_line(err)}"
        ) from None
    if model.metadata.get_input_schema() is None:  # the columns it reads are named by its signature alone
        raise UserError(f"cannot use model {uri!r}: it has no input signature; give a model the train step logged")
    return model, info.run_id
