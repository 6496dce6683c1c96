"""A logged model's predictions on the steps' rows (steps._data.predict_rows): real MLflow, a tiny
pyfunc model with a typed signature standing in for a trained network."""

from __future__ import annotations

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.models import ModelSignature
from mlflow.types.schema import ColSpec, DataType, Schema

from madness import names
from madness.errors import UserError
from steps._data import predict_rows

FEATURES = [f"{names.T1}{names.SEED_NUM}", f"{names.T1}{names.ELO}"]


class EchoTypes(mlflow.pyfunc.PythonModel):
    """Returns, for each row, 1.0 when the seed column arrived as integers, else 0.0."""

    def predict(self, context, model_input: pd.DataFrame, params=None):
        integer = pd.api.types.is_integer_dtype(model_input[FEATURES[0]])
        return np.full(len(model_input), 1.0 if integer else 0.0)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """One logged and loaded model for the module: the tests only call its predict."""
    from stores import temp_store

    signature = ModelSignature(
        inputs=Schema([ColSpec(DataType.long, FEATURES[0]), ColSpec(DataType.double, FEATURES[1])])
    )
    with temp_store(tmp_path_factory.mktemp("data")):
        with mlflow.start_run():
            info = mlflow.pyfunc.log_model(name="model", python_model=EchoTypes(), signature=signature)
        yield mlflow.pyfunc.load_model(info.model_uri)


def rows(**columns) -> pd.DataFrame:
    return pd.DataFrame(
        {names.SEASON: [2020, 2020], names.T1_TEAM: [1, 2], names.T2_TEAM: [2, 1], **columns}, dtype="float64"
    )


def test_a_seed_column_held_as_float_reaches_the_model_as_integers(model):
    frame = rows(**{FEATURES[0]: [1.0, 16.0], FEATURES[1]: [1500.0, 1400.0]})
    assert predict_rows(model, frame, "here").tolist() == [1.0, 1.0]


def test_data_without_a_feature_the_model_needs_is_one_line(model):
    with pytest.raises(UserError) as err:
        predict_rows(model, rows(**{FEATURES[1]: [1500.0, 1400.0]}), "data/x")
    assert str(err.value) == (
        f"the model needs feature {FEATURES[0]!r} (and 0 more) that the data at data/x lacks; "
        "box-score features need *RegularSeasonDetailedResults.csv for every league"
    )


def test_a_row_without_a_feature_value_is_one_line(model):
    with pytest.raises(UserError, match="has no regular-season features or seed"):
        predict_rows(model, rows(**{FEATURES[0]: [1.0, np.nan], FEATURES[1]: [1500.0, 1400.0]}), "here")
