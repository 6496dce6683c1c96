"""Models as the steps load them: a pyfunc model by URI, with the run that made it and its inputs."""

from __future__ import annotations

import mlflow
import mlflow.pyfunc

from madness.errors import UserError
from madness.model import import_keras


def load_model(uri: str):
    """Load a pyfunc model; return it with the id of the run that made it and its input columns."""
    try:
        info = mlflow.models.get_model_info(uri)
        import_keras()  # what the model's code imports, here without TensorFlow's load-time notices
        model = mlflow.pyfunc.load_model(uri)
    except Exception as err:  # noqa: BLE001 - MLflow raises several types for a missing run, model or alias
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UserError(
            f"cannot load model {uri!r} (give runs:/<run id>/model or models:/<name>@<alias>): {first}"
        ) from None
    return model, info.run_id, model.metadata.get_input_schema().input_names()


def typed_input(model, frame):
    """`frame` with each column cast to the model's input type: the steps hold every feature as float64,
    and a seed number, a whole number, is a `long` in the signature (exact). A model whose columns are
    untyped (`any`, logged before the signature was typed) takes the frame as it is."""
    from mlflow.types.schema import DataType

    types = {
        spec.name: spec.type.to_numpy()
        for spec in model.metadata.get_input_schema().inputs
        if isinstance(spec.type, DataType)
    }
    return frame.astype({name: dtype for name, dtype in types.items() if name in frame.columns})
