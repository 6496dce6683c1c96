"""The project's pinned environment as conda.yaml states it (what `mlflow run` builds)."""

from __future__ import annotations

from pathlib import Path

import yaml

CONDA_YAML = Path(__file__).resolve().parent.parent / "conda.yaml"
# What the served model imports; the store drivers (boto3, psycopg) and the plotting stay out of its environment.
MODEL_PACKAGES = ("mlflow", "tensorflow", "keras", "numpy", "pandas")


def project_pins(conda_yaml: Path = CONDA_YAML) -> list[str]:
    """Return conda.yaml's direct pins (its pip list without options such as `-c requirements.lock`)."""
    env = yaml.safe_load(conda_yaml.read_text())
    pip = next(dep["pip"] for dep in env["dependencies"] if isinstance(dep, dict))
    return [line for line in pip if not line.startswith("-")]


def model_pins(conda_yaml: Path = CONDA_YAML) -> list[str]:
    """Return the served model's requirements: conda.yaml's pins of the packages it imports, at training's versions."""
    return [pin for pin in project_pins(conda_yaml) if pin.split("==")[0] in MODEL_PACKAGES]
