"""The code MLflow logs as the served model ("models from code"): the model is set, not pickled.

train logs this file as `python_model`, with the networks and the feature names (a JSON list) as
artifacts, which steps.pyfunc_model.TournamentModel reads in load_context.
"""

from mlflow.models import set_model

from steps.pyfunc_model import TournamentModel

set_model(TournamentModel())
