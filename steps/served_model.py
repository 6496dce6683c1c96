"""The code MLflow logs as the served model ("models from code", see steps.pyfunc_model): set, not pickled."""

from mlflow.models import set_model

from steps.pyfunc_model import TournamentModel

set_model(TournamentModel())
