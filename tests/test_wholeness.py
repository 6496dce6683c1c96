"""Whole or not: a logged model's folder (madness.wholeness), built in code as MLflow writes it."""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

import pytest
import yaml

from madness import wholeness

MLMODEL = {
    "flavors": {
        "python_function": {
            "python_model": "python_model.pkl",
            "code": "code",
            "env": {"conda": "conda.yaml", "virtualenv": "python_env.yaml"},
            "artifacts": {"keras_model": {"path": "artifacts/network.keras", "uri": "/tmp/x/network.keras"}},
        }
    }
}


@pytest.fixture
def model(tmp_path) -> Path:
    (tmp_path / "MLmodel").write_text(yaml.safe_dump(MLMODEL))
    for name in ("python_model.pkl", "conda.yaml", "python_env.yaml", "code/steps/train.py"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x")
    (tmp_path / "artifacts").mkdir()
    with zipfile.ZipFile(tmp_path / "artifacts/network.keras", "w") as archive:
        archive.writestr("model.weights.h5", b"w" * 5000)
    return tmp_path


def test_a_whole_model_has_no_problem(model):
    assert wholeness.model_problem(model) is None


def test_a_model_without_mlmodel_is_named_so(model):
    (model / "MLmodel").unlink()
    assert wholeness.model_problem(model) == "its model has no MLmodel file"


def test_an_empty_folder_is_not_a_model(tmp_path):
    assert wholeness.model_problem(tmp_path) == "its model has no MLmodel file"


def test_an_unreadable_mlmodel_is_named_so(model):
    (model / "MLmodel").write_text("flavors: [unclosed")
    assert wholeness.model_problem(model) == "its model's MLmodel file is unreadable"


@pytest.mark.parametrize("name", ["artifacts/network.keras", "python_model.pkl", "conda.yaml", "code"])
def test_a_missing_named_file_is_named(model, name):
    path = model / name
    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink()
    assert wholeness.model_problem(model) == f"its model lacks {name}"


def test_an_empty_named_file_is_named(model):
    (model / "python_model.pkl").write_bytes(b"")
    assert wholeness.model_problem(model) == "its model lacks python_model.pkl"


def test_a_cut_short_network_is_damaged(model):
    path = model / "artifacts/network.keras"
    path.write_bytes(path.read_bytes()[:200])
    assert wholeness.model_problem(model) == "its model's artifacts/network.keras is damaged"


def test_a_network_with_a_flipped_byte_is_damaged(model):
    path = model / "artifacts/network.keras"
    data = bytearray(path.read_bytes())
    data[100] ^= 0xFF  # inside the stored member: its CRC no longer matches
    path.write_bytes(bytes(data))
    assert wholeness.model_problem(model) == "its model's artifacts/network.keras is damaged"


def test_missing_files_are_those_absent_or_empty():
    assert wholeness.missing_files(
        {"loss.png": 10, "features/manifest.json": 0}, ["loss.png", "features/manifest.json", "x"]
    ) == ["features/manifest.json", "x"]
