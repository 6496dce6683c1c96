"""Typed step parameters shared by MLproject and the step CLIs, with one-line errors.

MLflow passes every `-P` value through as a string without checking it, so each step validates
its own values here. A `Param` carries the name, MLproject type and default that a test compares
against `MLproject`.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from madness import names
from madness.errors import UserError

# MLproject's number types: how a value is read, and what to call one in an error.
_NUMBERS = {"int": (int, "an integer"), "float": (float, "a number")}


@dataclass(frozen=True)
class Param:
    """A step parameter: its name, MLproject type, default (None: required), help and optional value check."""

    name: str
    type: str  # as written in MLproject: string, int or float
    default: Any  # None: required (no default in MLproject either)
    help: str
    check: Callable[[str, Any], Any] | None = None

    def convert(self, text: str) -> Any:
        """Return `text` converted to the param's type and checked; raise UserError naming a bad value."""
        value = str(text)
        if self.type in _NUMBERS:
            read, noun = _NUMBERS[self.type]
            try:
                value = read(value.strip())
            except ValueError:
                raise UserError(f"{self.name} must be {noun}, got {text!r}") from None
            if isinstance(value, float) and not math.isfinite(value):
                raise UserError(f"{self.name} must be a finite number, got {text!r}")
        return self.check(self.name, value) if self.check else value


def positive(name: str, value):
    """Return `value`; raise UserError unless it is > 0."""
    if value <= 0:
        raise UserError(f"{name} must be > 0, got {value!r}")
    return value


def non_negative(name: str, value):
    """Return `value`; raise UserError when it is negative."""
    if value < 0:
        raise UserError(f"{name} must be >= 0, got {value!r}")
    return value


def one_of(*choices: str):
    """Return a check accepting only `choices`: any other value raises UserError listing them."""

    def check(name: str, value: str) -> str:
        """Return `value` when it is one of the choices; raise UserError listing them otherwise."""
        if value not in choices:
            raise UserError(f"unknown {name} {value!r}; accepted: {', '.join(choices)}")
        return value

    return check


def boolean(name: str, value: str) -> bool:
    """Return True for true/1/yes and False for false/0/no (any case); raise UserError for anything else."""
    lowered = value.strip().lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no"):
        return False
    raise UserError(f"{name} must be true or false, got {value!r}")


FIRST_SEASON, LAST_SEASON = 1985, 2100  # Kaggle's men's data start in 1985


def season(name: str, value: int) -> int:
    """Return `value` when it is a season from FIRST_SEASON to LAST_SEASON; raise UserError otherwise."""
    if not FIRST_SEASON <= value <= LAST_SEASON:
        raise UserError(f"{name} must be a season between {FIRST_SEASON} and {LAST_SEASON}, got {value}")
    return value


def not_empty(name: str, value: str) -> str:
    """Return `value`; raise UserError when it is empty or blank."""
    if not value.strip():
        raise UserError(f"{name} must not be empty")
    return value


DATA_PARAMS = (
    Param("data", "string", names.SYNTHETIC, "'synthetic' (generated from seed) or a folder of Kaggle CSVs", not_empty),
    Param("league", "string", "both", "M (men), W (women) or both", one_of(*names.LEAGUE_CHOICES)),
    Param("first_season", "int", 2003, "first training season", season),
    Param("val_season", "int", 2019, "first validation season", season),
    Param("test_season", "int", 2022, "first test season (last_season + 1: no test seasons)", season),
    Param("last_season", "int", 2023, "last season used (the last test season, or validation season)", season),
    Param("seed", "int", 42, "seed for the synthetic league, weights and shuffling", non_negative),
)

# A pair's networks (train and main); madness.model.member_seeds derives their seeds from `seed`.
SEEDS = Param(
    "seeds",
    "int",
    1,
    "networks trained per pair from seeds derived from `seed`; the model is their average (> 0)",
    positive,
)


class _OneLineParser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse's own errors: one line, no usage block
        """Print argparse's error as `<prog>: error: <message>` on stderr and exit 2."""
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        sys.exit(2)


def parse(prog: str, description: str, params: tuple[Param, ...], argv=None) -> tuple[dict[str, Any], dict[str, str]]:
    """Parse `--name value` options into (checked values, the strings as given).

    The strings are what gets logged as params: `mlflow run` has already logged them as given, and
    MLflow refuses a second `log_param` with another string for the same value (1e-2 vs 0.01).
    """
    parser = _OneLineParser(prog=prog, description=description)
    for p in params:
        if p.default is None:
            parser.add_argument(f"--{p.name}", required=True, help=f"{p.help} (required)")
        else:
            parser.add_argument(f"--{p.name}", default=str(p.default), help=f"{p.help} (default: {p.default})")
    raw = vars(parser.parse_args(argv))
    try:
        return {p.name: p.convert(raw[p.name]) for p in params}, raw
    except UserError as err:
        parser.error(str(err))
