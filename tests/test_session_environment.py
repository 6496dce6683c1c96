"""The test session's environment (tests/conftest.py): what a user exported never reaches a test,
and a step trained in the test process works whichever test started TensorFlow first."""

from __future__ import annotations

import io
import os
from contextlib import redirect_stdout

from conftest import EXPORTED_BY_THE_USER, USERS_VARIABLES
from steps import train

SET_BY_THE_SESSION = ("MLFLOW_TRACKING_URI", train.CACHE_ENV, "XDG_CACHE_HOME")


def test_no_variable_the_user_exported_reaches_a_test():
    # `make test` itself exports MLFLOW_TRACKING_URI=sqlite:///mlflow.db, so CI checks one at least.
    reached = {name for name, value in EXPORTED_BY_THE_USER.items() if os.environ.get(name) == value}
    assert not reached


def test_the_session_keeps_its_store_and_caches_in_its_own_folder(tmp_path_factory):
    session = str(tmp_path_factory.getbasetemp())
    assert set(SET_BY_THE_SESSION) <= set(USERS_VARIABLES)
    assert all(session in os.environ[name] for name in SET_BY_THE_SESSION if name in os.environ)
    assert session in os.environ[train.CACHE_ENV]


def test_a_train_step_runs_in_a_process_where_tensorflow_already_ran(tracking):
    import tensorflow as tf

    tf.constant([1.0]) + 1.0  # TensorFlow's context starts here, before the step sets its threads
    with redirect_stdout(io.StringIO()) as printed:
        train.main(["--model", "small", "--epochs", "1", "--league", "W"])
    assert "train run " in printed.getvalue()
