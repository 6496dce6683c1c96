"""The served model: a pyfunc that takes the feature table's columns and returns P(team 1 wins).

MLflow's Keras flavor only accepts tensor signatures; wrapping the saved Keras network (whose first
layer holds the fitted scaler) in a pyfunc gives a column signature, so callers pass a DataFrame
with named columns, in any order, and never rescale by hand. It ships with the model (code_paths).
The columns are declared `any`, not `double`: MLflow refuses int64 -> double, and a feature table
read with pandas (games.csv) holds integer seed numbers; `predict` casts every column to float32.
"""

from __future__ import annotations

import mlflow.pyfunc
import numpy as np
import pandas as pd

KERAS_ARTIFACT = "keras_model"


def signature(feature_names: list[str], model_input, probabilities):
    """The feature columns by name (integer or float values), the probabilities out."""
    from mlflow.models import ModelSignature, infer_signature
    from mlflow.types.schema import AnyType, ColSpec, Schema

    inputs = Schema([ColSpec(AnyType(), name) for name in feature_names])
    return ModelSignature(inputs=inputs, outputs=infer_signature(model_input, probabilities).outputs)


def load_network(path):
    import keras

    return keras.models.load_model(path, compile=False)


class TournamentModel(mlflow.pyfunc.PythonModel):
    def __init__(self, feature_names: list[str]):
        self.feature_names = list(feature_names)
        self.network = None

    @classmethod
    def from_file(cls, feature_names: list[str], keras_path) -> TournamentModel:
        """The model as `mlflow.pyfunc.load_model` gives it, loaded from the saved network file:
        `train` scores through this, so its logged Brier is the served model's, bit for bit."""
        served = cls(feature_names)
        served.network = load_network(keras_path)
        return served

    def load_context(self, context):
        self.network = load_network(context.artifacts[KERAS_ARTIFACT])

    # The DataFrame hint tells MLflow there is no signature to infer from it (the signature is given
    # at logging) and spares the warning it gives for a predict without hints; validation is unchanged.
    def predict(self, context, model_input: pd.DataFrame, params=None):
        values = np.asarray(model_input[self.feature_names], dtype="float32")
        return self.network.predict(values, verbose=0).reshape(-1).astype("float64")
