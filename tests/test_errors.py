"""madness.errors.first_line (UserError's one line is tested in test_cli.py)."""

from __future__ import annotations

from madness.errors import first_line


def test_first_line_is_the_first_line_of_the_message_without_surrounding_blanks():
    assert first_line(ValueError("\n  bad value\nTraceback: more")) == "bad value"


def test_first_line_of_an_empty_message_is_the_type_name():
    assert first_line(KeyError()) == "KeyError" and first_line(OSError("  ")) == "OSError"
