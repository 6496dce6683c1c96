"""The declared environment is exact and agrees with the lock; the code's layering holds."""

from __future__ import annotations

import ast
import os
import platform
import re
from importlib import metadata
from pathlib import Path

import pytest
import yaml

from conftest import ROOT

CONDA = yaml.safe_load((ROOT / "conda.yaml").read_text())
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([A-Za-z0-9.+!-]+)$")


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def conda_python() -> str:
    pins = [d for d in CONDA["dependencies"] if isinstance(d, str) and re.match(r"^python[=<>\s]", d)]
    assert len(pins) == 1, f"conda.yaml must list python once, found {pins}"
    return pins[0]


def pip_lines() -> list[str]:
    lists = [d["pip"] for d in CONDA["dependencies"] if isinstance(d, dict) and "pip" in d]
    assert len(lists) == 1, "conda.yaml must have one pip list"
    return [str(line).strip() for line in lists[0]]


def pip_pins() -> dict[str, str]:
    pins = {}
    for line in pip_lines():
        if line.startswith("-"):
            continue
        match = PIN.match(line)
        assert match, f"conda.yaml pip line {line!r} is not name==version"
        pins[canonical(match.group(1))] = match.group(2)
    return pins


def lock_pins() -> dict[str, set[str]]:
    """Every `name==version` of requirements.lock (a name may be pinned per platform marker)."""
    pins: dict[str, set[str]] = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        if not line.strip() or line[0] in "# \t-":
            continue
        requirement = line.split(";")[0].strip()
        match = PIN.match(requirement)
        assert match, f"requirements.lock line {line!r} is not name==version"
        pins.setdefault(canonical(match.group(1)), set()).add(match.group(2))
    return pins


def available_pythons() -> set[str]:
    """Interpreters this machine has: the one running the tests and pyenv's (where pyenv is)."""
    versions = {platform.python_version()}
    pyenv_root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    if pyenv_root.is_dir():
        versions |= {p.name for p in pyenv_root.iterdir()}
    return versions


def test_python_is_pinned_to_an_exact_version():
    assert re.fullmatch(r"python=\d+\.\d+\.\d+", conda_python()), conda_python()


def test_pinned_python_is_available():
    version = conda_python().split("=", 1)[1]
    assert version in available_pythons()


def test_pinned_python_is_the_one_the_lock_is_resolved_for():
    text = (ROOT / "tools" / "lock.py").read_text()
    assert f'PYTHON_VERSION = "{conda_python().split("=", 1)[1]}"' in text


def test_every_pip_line_is_an_exact_pin():
    assert pip_pins()  # and each line matched name==version


def test_pip_list_is_constrained_by_the_lock():
    assert "-c requirements.lock" in pip_lines()


def test_every_pin_is_in_the_lock_at_the_same_version():
    locked = lock_pins()
    for name, version in pip_pins().items():
        assert locked.get(name) == {version}, (
            f"{name}=={version} in conda.yaml, {locked.get(name)} in requirements.lock"
        )


@pytest.mark.parametrize("listing", ["requirements-server.in", "requirements-dev.in"])
def test_server_and_dev_tools_are_in_the_lock_at_the_same_version(listing):
    locked = lock_pins()
    lines = [line.split("#")[0].strip() for line in (ROOT / listing).read_text().splitlines()]
    assert any(lines), f"{listing} lists nothing"
    for line in filter(None, lines):
        name, version = PIN.match(
            re.sub(r"\[[a-z,]+\]", "", line)
        ).groups()  # moto[server]==x: the extra is not in the lock's name
        assert locked.get(canonical(name)) == {version}, line


def test_installed_packages_are_the_pinned_ones():
    for name, version in pip_pins().items():
        assert metadata.version(name) == version, f"{name}: installed {metadata.version(name)}, pinned {version}"


def modules(package: str) -> list[Path]:
    return sorted((ROOT / package).glob("*.py"))


@pytest.mark.parametrize("path", modules("steps") + modules("madness"), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_module_has_a_docstring(path):
    docstring = ast.get_docstring(ast.parse(path.read_text()))
    assert docstring and docstring.strip(), f"{path.relative_to(ROOT)} has no module docstring"


def imported_modules(tree: ast.AST) -> set[str]:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", None)) in (
            "import_module",
            "__import__",
        ):
            names |= {a.value for a in node.args if isinstance(a, ast.Constant) and isinstance(a.value, str)}
    return names


@pytest.mark.parametrize("path", modules("madness"), ids=lambda p: p.name)
def test_madness_does_not_import_mlflow(path):
    imported = imported_modules(ast.parse(path.read_text()))
    assert not {m for m in imported if m == "mlflow" or m.startswith("mlflow.")}, f"{path.name} imports {imported}"


def test_import_check_sees_every_form_of_import():
    tree = ast.parse("import mlflow.data\nfrom mlflow import log_param\nimportlib.import_module('mlflow')\n")
    assert imported_modules(tree) == {"mlflow.data", "mlflow"}
