"""The words MLflow's UI shows for the project's experiments: what each one holds (which network,
which grid), and the tags that make it a model-training experiment."""

from __future__ import annotations

from madness import names
from madness.cli import DATA_PARAMS
from madness.model import ARCHITECTURES, HIDDEN_ACTIVATION, OUTPUT_ACTIVATION


def network_words(model: str) -> str:
    """Return e.g. 'the medium network (64-64 relu, sigmoid out)', from madness.model.ARCHITECTURES."""
    if model not in ARCHITECTURES:  # the train runs will refuse it
        return f"the {model} network"
    widths = "-".join(str(units) for units in ARCHITECTURES[model])
    return f"the {model} network ({widths} {HIDDEN_ACTIVATION}, {OUTPUT_ACTIVATION} out)"


def grid_words(lrs: list[str], epochs: str) -> str:
    """Return e.g. 'learning rates 0.001, 0.01 for 100 epochs' (singular for one rate or one epoch)."""
    rates = f"learning rate{'s' if len(lrs) > 1 else ''} {', '.join(lrs)}"
    return f"{rates} for {epochs} epoch{'' if epochs == '1' else 's'}"


def model_description(model: str) -> str:
    """Return the one line shown above the runs of experiment <prefix>_<model>: true of every run it holds,
    whatever rates, epochs, seeds or data later sweeps add."""
    return (
        f"Fabric Madness: {network_words(model)}; one run per learning rate and configuration, named "
        f"<model>_<lr> with any non-default setting after it (e.g. {model}_0.01_epochs5_seeds3), "
        "scored by Brier (lower is better)"
    )


def sweep_description(prefix: str) -> str:
    """Return the one line shown above the runs of experiment <prefix>: the sweeps and their ingest runs."""
    return (
        "Fabric Madness: sweep runs (each with its report: runs table, Brier against learning rate, "
        "loss curves) and the ingest runs they train on; each pair's run is in the experiment "
        f"{prefix}_<model> of its network"
    )


def run_name(model: str, lr: str, settings: dict[str, str], defaults: dict[str, str]) -> str:
    """Return `<model>_<lr>`, then `_<setting><value>` for epochs, batch_size, seeds and each data parameter not
    at its default, in that order (a data folder by its last part), so that runs of different configurations
    never share a name."""
    parts = [f"{model}_{lr}"]
    for key in ("epochs", "batch_size", "seeds", *(param.name for param in DATA_PARAMS)):
        value = str(settings.get(key, defaults[key]))
        if value != str(defaults[key]):
            parts.append(f"{key}{value.rstrip('/').rsplit('/', 1)[-1] if key == 'data' else value}")
    return "_".join(parts)


def training_tags(description: str | None) -> dict[str, str]:
    """Return an experiment's tags for MLflow's UI: a model-training experiment, with its description."""
    tags = {names.TAG_EXPERIMENT_KIND: names.EXPERIMENT_KIND_TRAINING}
    if description is not None:
        tags[names.TAG_DESCRIPTION] = tags[names.TAG_OUR_DESCRIPTION] = description
    return tags


def backtest_model_description(model: str, lrs: list[str], epochs: str) -> str:
    """Return the one line shown above the runs of experiment <prefix>_backtest_<model>."""
    return (
        f"Fabric Madness backtest: {network_words(model)} at {grid_words(lrs, epochs)}; one run per pair "
        "(its Brier on every predicted season, over all games, and against the seed baseline) holding one train "
        "run per season, each predicting that season from the seasons before it alone"
    )


def backtest_description(prefix: str, models: list[str]) -> str:
    """Return the one line shown above the runs of experiment <prefix>_backtest: the backtest runs."""
    return (
        "Fabric Madness: backtest runs (each with its report: pairs ranked by backtest Brier, how sure, the "
        "nested choice, Brier by season); their pairs in "
        f"{', '.join(f'{prefix}_backtest_{model}' for model in models)}"
    )
