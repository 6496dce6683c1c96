"""Run a command whose every word MLflow's kubernetes backend shell-quoted: the first word of each
entry point in the Kubernetes variant of MLproject (madness.backends.docker_variant).

MLflow (3.17, 3.18) builds a Job's command by `shlex.quote`-ing each word of the entry point's
command, and a container's command runs without a shell, so a parameter with a space or `<`, or an
empty string, would reach the step with its quotes (`'metrics.brier < 0.25'`, `''`). Each word
here is unquoted once, the exact inverse (`shlex.split(shlex.quote(word)) == [word]`), and the
command run in this process' place:

    python -m steps._unquote python -m steps.train --model small --features_uri "''"
"""

from __future__ import annotations

import os
import shlex
import sys


def unquoted(words: list[str]) -> list[str]:
    """Return each word with its shell quoting removed; raise ValueError for a word that is not one quoted word."""
    result = []
    for word in words:
        parts = shlex.split(word)
        if len(parts) != 1:
            raise ValueError(f"{word!r} is not one shell-quoted word")
        result.append(parts[0])
    return result


if __name__ == "__main__":
    command = unquoted(sys.argv[1:])
    os.execvp(command[0], command)
