"""Regenerate requirements.lock: conda.yaml's pip pins + requirements-dev.in, for every platform.

    python tools/lock.py        (what `make lock` runs; needs uv)
"""

import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
PYTHON_VERSION = "3.11.7"


def direct_pins(conda_yaml: Path = ROOT / "conda.yaml") -> list[str]:
    """The `==` pins of conda.yaml's pip list (option lines such as `-c file` excluded)."""
    env = yaml.safe_load(conda_yaml.read_text())
    pip = next(dep["pip"] for dep in env["dependencies"] if isinstance(dep, dict))
    return [line for line in pip if not line.startswith("-")]


def main() -> int:
    # The pins go in on stdin so the lock's annotations name no temporary file ("via -r -").
    return subprocess.run(
        ["uv", "pip", "compile", "--universal", "--python-version", PYTHON_VERSION, "--quiet",
         "--no-header", "-", "requirements-dev.in", "-o", "requirements.lock"],
        input="\n".join(direct_pins()) + "\n", text=True, cwd=ROOT,
    ).returncode


if __name__ == "__main__":
    sys.exit(main())
