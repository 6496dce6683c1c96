"""Regenerate requirements.lock, for every platform: conda.yaml's pip pins, requirements-server.in,
requirements-kubernetes.in and requirements-dev.in.

python tools/lock.py        (what `make lock` runs; needs uv)
"""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from madness.environment import project_pins  # noqa: E402

PYTHON_VERSION = "3.11.7"


def main() -> int:
    # The pins go in on stdin so the lock's annotations name no temporary file ("via -r -").
    return subprocess.run(  # its exit code is this script's
        [
            "uv",
            "pip",
            "compile",
            "--universal",
            "--python-version",
            PYTHON_VERSION,
            "--quiet",
            "--no-header",
            "-",
            "requirements-server.in",
            "requirements-kubernetes.in",
            "requirements-dev.in",
            "-o",
            "requirements.lock",
        ],
        input="\n".join(project_pins()) + "\n",
        text=True,
        cwd=ROOT,
        check=False,
    ).returncode


if __name__ == "__main__":
    sys.exit(main())
