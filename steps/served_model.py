"""The code MLflow logs as the served model ("models from code"): the model is set, not pickled.

train logs this file as `python_model`, with the networks as artifacts and the feature names as
model_config (steps.pyfunc_model.TournamentModel reads both in load_context).
"""

from mlflow.models import set_model

from steps.pyfunc_model import TournamentModel

set_model(TournamentModel())
