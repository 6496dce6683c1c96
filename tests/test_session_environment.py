"""The test session's environment (tests/conftest.py): what a user exported never reaches a test,
and a step trained in the test process works whichever test started TensorFlow first."""

from __future__ import annotations

import io
import os
from contextlib import redirect_stdout

from conftest import USERS_VARIABLES
from steps import train

SET_BY_THE_SESSION = ("MLFLOW_TRACKING_URI", train.CACHE_ENV, "XDG_CACHE_HOME")


def test_the_users_variables_are_cleared_and_the_sessions_own_set(tmp_path_factory):
    assert set(SET_BY_THE_SESSION) <= set(USERS_VARIABLES)
    leaked = {name: os.environ[name] for name in USERS_VARIABLES if name in os.environ}
    session = str(tmp_path_factory.getbasetemp())
    assert set(leaked) == set(SET_BY_THE_SESSION), leaked
    assert all(session in value for value in leaked.values()), leaked


def test_a_train_step_runs_in_a_process_where_tensorflow_already_ran(tracking):
    import tensorflow as tf

    tf.constant([1.0]) + 1.0  # TensorFlow's context starts here, before the step sets its threads
    with redirect_stdout(io.StringIO()) as printed:
        train.main(["--model", "small", "--epochs", "1", "--league", "W"])
    assert "train run " in printed.getvalue()
