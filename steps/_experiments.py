"""The project's experiments: found or created by name, marked model-training experiments with their
description (MLflow's UI shows both), and the names its train runs get."""

from __future__ import annotations

import os
import time

from mlflow.exceptions import MlflowException
from mlflow.utils import name_utils

from madness import describe, names
from madness.errors import UserError

DEFAULT_PREFIX = "fabric_madness"  # main's default prefix: a train run on its own goes to <prefix>_<model>


def label_experiment(client, experiment, description: str | None, attempts: int = 3) -> None:
    """Add the kind and the description (None: the kind only) to an experiment that lacks them, and
    replace a description the project wrote (the experiment's tag madness.description holds it) when it
    now words it otherwise; a kind or a description a user wrote is kept. Sweeps may add them at once
    (a SQLite store may then refuse a write): a failed write is retried on the experiment read
    again, where the other's tag may already be."""
    for attempt in range(attempts):
        tags = experiment.tags
        ours = names.TAG_DESCRIPTION in tags and tags[names.TAG_DESCRIPTION] == tags.get(names.TAG_OUR_DESCRIPTION)
        missing = {
            key: value
            for key, value in describe.training_tags(description).items()
            if key not in tags
            or (ours and key in (names.TAG_DESCRIPTION, names.TAG_OUR_DESCRIPTION) and tags[key] != value)
        }
        try:
            for key, value in missing.items():
                client.set_experiment_tag(experiment.experiment_id, key, value)
            return
        except MlflowException:
            if attempt == attempts - 1:
                raise
            time.sleep(0.5 * (attempt + 1))
            experiment = client.get_experiment(experiment.experiment_id)


def experiment_id(client, name: str, description: str) -> str:
    """Fetch the experiment, or create it: as the article does, one per model. Two sweeps may
    create it at once: the second takes the first's. Either way it is marked a model-training
    experiment ("Machine learning" in MLflow's UI) with `description`, when it has neither yet."""
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        try:
            return client.create_experiment(name, tags=describe.training_tags(description))
        except MlflowException as err:
            if err.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
            experiment = client.get_experiment_by_name(name)
    if experiment.lifecycle_stage == "deleted":
        raise UserError(f"experiment {name!r} is deleted; restore it or choose another prefix")
    label_experiment(client, experiment, description)
    return experiment.experiment_id


def own_experiment(client, model: str) -> dict:
    """Return where a train run started on its own goes: nowhere chosen (`mlflow run` created the run already,
    or MLFLOW_EXPERIMENT_NAME / _ID names one) or else the article's experiment <prefix>_<model>."""
    if any(os.environ.get(name) for name in ("MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_NAME", "MLFLOW_EXPERIMENT_ID")):
        return {}
    name = f"{DEFAULT_PREFIX}_{model}"
    return {"experiment_id": experiment_id(client, name, describe.model_description(model))}


def generated_name(run_name: str) -> bool:
    """Return whether MLflow made up this run name (`<predicate>-<noun>-<number>`), i.e. its caller gave none.

    Uses MLflow's private word lists (mlflow.utils.name_utils): there is no public way to tell a made-up
    name from a given one; tests/test_train_step.py fails if the lists move or change shape."""
    parts = run_name.split("-")
    return (
        len(parts) == 3
        and parts[0] in name_utils._GENERATOR_PREDICATES
        and parts[1] in name_utils._GENERATOR_NOUNS
        and parts[2].isdigit()
    )
