"""MLproject and the steps agree: every entry point's parameters are its step's PARAMS, passed as --name {name}.

Generic over entry points: a new one in MLproject is covered without touching this file.
"""

from __future__ import annotations

import importlib
import re
import shlex

import pytest
import yaml

from conftest import ROOT
from madness import cli

SPEC = yaml.safe_load((ROOT / "MLproject").read_text())
ENTRY_POINTS = sorted(SPEC["entry_points"])
COMMAND = re.compile(r"^python -m (steps\.\w+)(\s|$)")


def step_module(entry: str):
    command = " ".join(SPEC["entry_points"][entry]["command"].split())
    match = COMMAND.match(command)
    assert match, f"entry point {entry!r}: command must start with 'python -m steps.<name>', got {command!r}"
    return importlib.import_module(match.group(1))


def test_project_has_entry_points():
    assert "ingest" in ENTRY_POINTS
    assert SPEC["conda_env"] == "conda.yaml"


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_step_exposes_params(entry):
    params = step_module(entry).PARAMS
    assert isinstance(params, tuple) and params
    assert all(isinstance(p, cli.Param) for p in params)


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_parameter_names_types_and_defaults_match(entry):
    # A parameter without a default in MLproject is required: its Param's default is None.
    declared = {
        name: (spec["type"], str(spec.get("default")))
        for name, spec in SPEC["entry_points"][entry]["parameters"].items()
    }
    in_step = {p.name: (p.type, str(p.default)) for p in step_module(entry).PARAMS}
    assert in_step == declared


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_parameters_are_declared_as_mappings_with_a_type(entry):
    for name, spec in SPEC["entry_points"][entry]["parameters"].items():
        assert isinstance(spec, dict) and spec.get("type") in ("string", "int", "float"), f"{entry}.{name}: {spec!r}"


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_every_parameter_is_passed_as_its_own_option(entry):
    command = SPEC["entry_points"][entry]["command"]
    names = list(SPEC["entry_points"][entry]["parameters"])
    for name in names:
        assert f"--{name} {{{name}}}" in command, f"{entry}: command lacks --{name} {{{name}}}"
    assert sorted(re.findall(r"\{(\w+)\}", command)) == sorted(names)
    assert sorted(re.findall(r"--(\w+)", command)) == sorted(names)


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_mlflow_reads_the_project_and_the_step_accepts_its_command(entry, tmp_path):
    from mlflow.projects import _project_spec

    project = _project_spec.load_project(str(ROOT))
    point = project.get_entry_point(entry)
    assert sorted(point.parameters) == sorted(SPEC["entry_points"][entry]["parameters"])
    params = step_module(entry).PARAMS
    sample = {"string": "runs:/0123abcd/model", "int": "2020", "float": "0.5"}
    given = {p.name: sample[p.type] for p in params if p.default is None}  # the required ones
    argv = shlex.split(point.compute_command(given, str(tmp_path)))
    assert argv[:2] == ["python", "-m"]
    values, _ = cli.parse(entry, "", params, argv[3:])
    assert values == {p.name: p.convert(given[p.name] if p.default is None else str(p.default)) for p in params}
