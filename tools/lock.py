"""Regenerate requirements.lock: conda.yaml's pip pins, requirements-server.in and requirements-dev.in, for every platform.

    python tools/lock.py        (what `make lock` runs; needs uv)
"""

import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from steps._common import project_pins as direct_pins  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
PYTHON_VERSION = "3.11.7"


def main() -> int:
    # The pins go in on stdin so the lock's annotations name no temporary file ("via -r -").
    return subprocess.run(
        ["uv", "pip", "compile", "--universal", "--python-version", PYTHON_VERSION, "--quiet",
         "--no-header", "-", "requirements-server.in", "requirements-dev.in", "-o", "requirements.lock"],
        input="\n".join(direct_pins()) + "\n", text=True, cwd=ROOT,
    ).returncode


if __name__ == "__main__":
    sys.exit(main())
