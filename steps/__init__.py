"""Entry points of the MLproject: each module is thin (parse, call madness, log)."""
