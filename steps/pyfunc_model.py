"""The served model: a pyfunc that takes the feature table's columns and returns P(team 1 wins).

MLflow's Keras flavor only accepts tensor signatures; wrapping the saved Keras network (whose first
layer holds the fitted scaler) in a pyfunc gives a column signature, so callers pass a DataFrame
with named columns, in any order, and never rescale by hand. It ships with the model (code_paths).
"""

from __future__ import annotations

import mlflow.pyfunc
import numpy as np

KERAS_ARTIFACT = "keras_model"


class TournamentModel(mlflow.pyfunc.PythonModel):
    def __init__(self, feature_names: list[str]):
        self.feature_names = list(feature_names)
        self.network = None

    def load_context(self, context):
        import keras

        self.network = keras.models.load_model(context.artifacts[KERAS_ARTIFACT], compile=False)

    def predict(self, context, model_input, params=None):
        values = np.asarray(model_input[self.feature_names], dtype="float32")
        return self.network.predict(values, verbose=0).reshape(-1).astype("float64")
