"""The words MLflow's UI shows for the project's experiments: what each one holds (which network,
which grid), and the tags that make it a model-training experiment."""

from __future__ import annotations

from madness import names as n
from madness.model import ARCHITECTURES, HIDDEN_ACTIVATION, OUTPUT_ACTIVATION


def network_words(model: str) -> str:
    """E.g. 'the medium network (64-64 relu, sigmoid out)', from madness.model.ARCHITECTURES."""
    if model not in ARCHITECTURES:  # the train runs will refuse it
        return f"the {model} network"
    widths = "-".join(str(units) for units in ARCHITECTURES[model])
    return f"the {model} network ({widths} {HIDDEN_ACTIVATION}, {OUTPUT_ACTIVATION} out)"


def grid_words(lrs: list[str], epochs: str) -> str:
    rates = f"learning rate{'s' if len(lrs) > 1 else ''} {', '.join(lrs)}"
    return f"{rates} for {epochs} epoch{'' if epochs == '1' else 's'}"


def model_description(model: str, lrs: list[str], epochs: str) -> str:
    """The one line shown above the runs of experiment <prefix>_<model>."""
    return (
        f"Fabric Madness: {network_words(model)} trained at {grid_words(lrs, epochs)}; "
        f"one run per rate, scored by Brier (lower is better)"
    )


def sweep_description(prefix: str, models: list[str], lrs: list[str], epochs: str) -> str:
    """The one line shown above the runs of experiment <prefix>: the sweeps and their ingest runs."""
    return (
        f"Fabric Madness: sweep runs (each with its report: runs table, Brier against learning rate, "
        f"loss curves) and the ingest runs they train on; the sweep trains the {', '.join(models)} "
        f"network{'s' if len(models) > 1 else ''} at {grid_words(lrs, epochs)}, one run per pair in "
        f"{', '.join(f'{prefix}_{model}' for model in models)}"
    )


def training_tags(description: str | None) -> dict[str, str]:
    """An experiment's tags for MLflow's UI: a model-training experiment, with its description."""
    tags = {n.TAG_EXPERIMENT_KIND: n.EXPERIMENT_KIND_TRAINING}
    return tags if description is None else {**tags, n.TAG_DESCRIPTION: description}


def backtest_model_description(model: str, lrs: list[str], epochs: str) -> str:
    """The one line shown above the runs of experiment <prefix>_backtest_<model>."""
    return (
        f"Fabric Madness backtest: {network_words(model)} at {grid_words(lrs, epochs)}; one run per pair "
        "(its Brier on every predicted season, over all games, and against the seed baseline) holding one train "
        "run per season, each predicting that season from the seasons before it alone"
    )


def backtest_description(prefix: str, models: list[str]) -> str:
    """The one line shown above the runs of experiment <prefix>_backtest: the backtest runs."""
    return (
        "Fabric Madness: backtest runs (each with its report: pairs ranked by backtest Brier, how sure, the "
        "nested choice, Brier by season); their pairs in "
        f"{', '.join(f'{prefix}_backtest_{model}' for model in models)}"
    )
