"""The sweep's pure logic: the grid, the cache rule, thread shares and progress text."""

from __future__ import annotations

import contextlib
import math
import statistics
from dataclasses import dataclass

from madness.backends import usable_cores
from madness.cli import Param, one_of, positive
from madness.errors import UserError
from madness.model import MODEL_NAMES
from madness.names import Status

# Params that never change a run's results: the thread count (TensorFlow's op determinism gives the
# same bits with 1 or 2 threads; a test checks it) and where the features came from (the data digest
# is compared instead, so a re-ingested but identical data set still hits the cache).
IGNORED_IN_CACHE = frozenset({"threads", "features_uri"})


def canonical(text: str) -> str:
    """Return the number's one spelling (`1e-2`, `.01` and `0.010` are all `0.01`; `010` is `10`): params are
    stored as strings, and one configuration must have one name. Anything else stays as written,
    for the step that reads it to refuse."""
    text = str(text).strip()
    with contextlib.suppress(ValueError):
        return str(int(text))
    try:
        number = float(text)
    except ValueError:
        return text
    return repr(number) if math.isfinite(number) else text


def same_value(a: str | None, b: str | None) -> bool:
    """Return whether two stored params are equal by value: numbers as numbers, anything else as strings."""
    return a == b or (a is not None and b is not None and canonical(a) == canonical(b))


@dataclass(frozen=True)
class Pair:
    """One pair of the grid: a model and a learning rate."""

    model: str
    lr: str  # canonical (see `canonical`): MLflow stores params as strings, and so does the cache

    @property
    def name(self) -> str:
        """Return the pair's run name, `<model>_<lr>`."""
        return f"{self.model}_{self.lr}"


def split_list(name: str, text: str) -> list[str]:
    """Return the items, each in its canonical spelling; an empty item or a value given twice (in any
    spelling) is refused."""
    items = [item.strip() for item in text.split(",")]
    if not any(items):
        raise UserError(f"{name} must be a comma-separated list, got {text!r}")
    if not all(items):
        raise UserError(f"{name} has an empty item in {text!r}; give values separated by single commas")
    seen: dict[str, str] = {}
    for item in items:
        value = canonical(item)
        if value in seen:
            spellings = f" (as {seen[value]!r} and {item!r})" if seen[value] != item else ""
            raise UserError(f"{name} lists {value} twice{spellings} in {text!r}; give each value once")
        seen[value] = item
    return list(seen)


MODEL = Param("model", "string", None, "", one_of(*MODEL_NAMES))
LEARNING_RATE = Param("lrs", "float", None, "", positive)


def grid(models: str, lrs: str) -> list[Pair]:
    """Return every model x learning-rate pair, in the order given (each model's pairs together), each value
    checked as `train` checks its own, so that a bad one stops the sweep before any run."""
    models, lrs = split_list("models", models), split_list("lrs", lrs)
    for model in models:
        MODEL.convert(model)
    for lr in lrs:
        LEARNING_RATE.convert(lr)
    return [Pair(m, lr) for m in models for lr in lrs]


def is_reusable(
    run_status: str,
    run_params: dict[str, str],
    run_tags: dict[str, str],
    want_params: dict[str, str],
    want_tags: dict[str, str],
) -> bool:
    """Return whether the run can stand for a new one: FINISHED, with the same params (by value: see
    `same_value`) and the same values of `want_tags` (git commit, working-tree state, data digest)."""
    keys = (set(run_params) | set(want_params)) - IGNORED_IN_CACHE
    return (
        run_status == Status.FINISHED
        and all(same_value(run_params.get(k), want_params.get(k)) for k in keys)
        and all(value is not None and run_tags.get(tag) == value for tag, value in want_tags.items())
    )


def threads_per_job(jobs: int, cores: int | None = None) -> int:
    """Return a fair share of the cores this process may use for each of `jobs` concurrent trainings."""
    cores = cores or usable_cores()
    return max(1, cores // max(1, jobs))


def eta_seconds(done_durations: list[float], remaining: int, jobs: int) -> float | None:
    """Return the seconds left for `remaining` pairs, `jobs` at a time, at the mean duration of those done;
    None before any is done."""
    return statistics.fmean(done_durations) * remaining / max(1, jobs) if done_durations else None


def format_seconds(seconds: float | None) -> str:
    """Return `seconds` as e.g. '2m05s' or '42s' (whole seconds), '?' for None."""
    if seconds is None:
        return "?"
    seconds = round(seconds)
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def progress_line(done: int, total: int, running: list[str], eta: float | None, waiting: list[str] = ()) -> str:
    """Return the sweep's progress line: pairs done of `total`, those running, those waiting for another sweep,
    the time left."""
    running_text = ", ".join(running) if running else "none"
    waiting_text = f"; waiting for another sweep: {', '.join(waiting)}" if waiting else ""
    return f"[{done}/{total} done] running: {running_text}{waiting_text}; time left ~{format_seconds(eta)}"
