"""madness.cli: typed params; every bad value is one line on stderr and a non-zero exit."""

from __future__ import annotations

import pytest

from madness import cli
from madness.errors import UserError

DEFAULTS = {
    "data": "synthetic",
    "league": "both",
    "first_season": 2003,
    "val_season": 2019,
    "test_season": 2022,
    "last_season": 2023,
    "seed": 42,
}


def parse(argv):
    return cli.parse("ingest", "test", cli.DATA_PARAMS, argv)


def failure(capsys, argv) -> str:
    """Parse `argv`, expect a non-zero exit, and return stderr's single line."""
    with pytest.raises(SystemExit) as exit_:
        parse(argv)
    assert exit_.value.code not in (0, None)
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


def test_defaults_parse():
    values, raw = parse([])
    assert values == DEFAULTS
    assert raw == {k: str(v) for k, v in DEFAULTS.items()}


def test_values_are_converted_and_raw_strings_kept():
    values, raw = parse(["--league", "W", "--first_season", " 2010 ", "--seed", "0", "--data", "/x"])
    assert values["league"] == "W" and values["first_season"] == 2010 and values["seed"] == 0
    assert values["data"] == "/x"
    assert raw["first_season"] == " 2010 "


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["--league", "X"], "ingest: error: unknown league 'X'; accepted: M, W, both"),
        (["--first_season", "abc"], "ingest: error: first_season must be an integer, got 'abc'"),
        (["--seed", "1.5"], "ingest: error: seed must be an integer, got '1.5'"),
        (["--seed", "-1"], "ingest: error: seed must be >= 0, got -1"),
        (["--val_season", "1900"], "ingest: error: val_season must be a season between 1985 and 2100, got 1900"),
        (["--data", " "], "ingest: error: data must not be empty"),
    ],
)
def test_bad_value_is_one_line(capsys, argv, expected):
    assert failure(capsys, argv) == expected


@pytest.mark.parametrize(
    "argv, words",
    [
        (["--nope", "1"], "unrecognized arguments: --nope 1"),
        (["--league"], "argument --league: expected one argument"),
        (["stray"], "unrecognized arguments: stray"),
    ],
)
def test_argparse_errors_are_one_line_without_usage(capsys, argv, words):
    line = failure(capsys, argv)
    assert line.startswith("ingest: error: ") and words in line


def test_help_exits_zero(capsys):
    with pytest.raises(SystemExit) as exit_:
        parse(["--help"])
    assert exit_.value.code == 0
    assert "--first_season" in capsys.readouterr().out


@pytest.mark.parametrize("text, value", [("0.01", 0.01), ("1e-3", 0.001), (" 2 ", 2.0)])
def test_float_param(text, value):
    assert cli.Param("lr", "float", 0.001, "").convert(text) == value


@pytest.mark.parametrize("text", ["nan", "inf", "-inf", "fast"])
def test_float_param_refuses_non_finite_and_text(text):
    with pytest.raises(UserError, match=r"lr must be a (finite )?number"):
        cli.Param("lr", "float", 0.001, "").convert(text)


def test_positive_check():
    param = cli.Param("epochs", "int", 100, "", cli.positive)
    assert param.convert("3") == 3
    with pytest.raises(UserError, match=r"epochs must be > 0, got 0"):
        param.convert("0")


@pytest.mark.parametrize("text, value", [("true", True), ("False", False), ("1", True), ("no", False)])
def test_boolean_check(text, value):
    assert cli.Param("flag", "string", "false", "", cli.boolean).convert(text) is value


def test_boolean_check_refuses_other_words():
    with pytest.raises(UserError, match=r"flag must be true or false, got 'maybe'"):
        cli.Param("flag", "string", "false", "", cli.boolean).convert("maybe")


def test_user_error_message_is_one_line():
    assert str(UserError("a\n  b\tc ")) == "a b c"
