"""Figures: loss curves, calibration, Brier against learning rate. Each returns a matplotlib Figure."""

from __future__ import annotations

import pandas as pd

from madness import names
from madness.scoring import reliability


def new_figure(rows: int = 1, cols: int = 1, size=(7, 4.5), **kwargs):
    """Return a new Figure of `size` inches and its `rows` x `cols` axes (`kwargs` go to `subplots`)."""
    # Imported here: matplotlib costs ~0.7 s at start-up, and a sweep that reuses its report draws nothing.
    # Figure objects, not pyplot: no global backend or figure registry, nothing to close, no screen needed.
    from matplotlib.figure import Figure

    fig = Figure(figsize=size)
    return fig, fig.subplots(rows, cols, **kwargs)


def loss_curves(ax, train_loss, val_loss, best_epoch: int, title: str):
    """Draw the training and validation loss per epoch on `ax`, a dotted line at the (0-based) `best_epoch`."""
    epochs = range(1, len(train_loss) + 1)
    ax.plot(epochs, train_loss, label=names.TRAIN_LOSS)
    ax.plot(epochs, val_loss, label=names.VAL_LOSS)
    ax.axvline(best_epoch + 1, color="grey", linestyle=":", label=f"best epoch {best_epoch + 1}")
    ax.set(title=title, xlabel="epoch", ylabel="MSE")
    ax.legend()


def loss_figure(train_loss, val_loss, best_epoch: int, model: str, lr: str):
    """Return a figure of one run's loss curves, titled with its model and learning rate."""
    fig, ax = new_figure()
    loss_curves(
        ax, train_loss, val_loss, best_epoch, f"{model} model, learning rate {lr}: training and validation loss"
    )
    fig.tight_layout()
    return fig


def calibration_figure(y, p_model, p_baseline, title: str):
    """Return a calibration figure: observed frequency against mean prediction per bin, for the model and the
    seed baseline."""
    fig, ax = new_figure(size=(6, 6))
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", label="perfect calibration")
    for label, p in (("model", p_model), ("seed baseline", p_baseline)):
        table = reliability(y, p)
        ax.plot(table["mean_pred"], table["observed"], marker="o", label=label)
    ax.set(
        title=title,
        xlabel="predicted probability that team 1 wins",
        ylabel="observed frequency",
        xlim=(0, 1),
        ylim=(0, 1),
    )
    ax.legend()
    fig.tight_layout()
    return fig


def brier_by_lr_figure(table: pd.DataFrame):
    """Draw the article's Figure 5: Brier score against learning rate, one line per model; with several
    seeds per pair, the mean of the members' Brier with error bars of one standard deviation."""
    fig, ax = new_figure()
    spread = table[names.BRIER_SD].notna().any()
    for model, rows in table.groupby("model", sort=False):
        rows = rows.sort_values("lr")
        if spread:
            ax.errorbar(
                rows["lr"], rows[names.BRIER_MEAN], yerr=rows[names.BRIER_SD], marker="o", capsize=4, label=model
            )
        else:
            ax.plot(rows["lr"], rows[names.BRIER_MEAN], marker="o", label=model)
    ax.set_xscale("log")
    ylabel = "Brier score (test seasons; mean +- sd over seeds)" if spread else "Brier score (test seasons)"
    ax.set(title="Brier score against learning rate", xlabel="learning rate", ylabel=ylabel)
    if not table.empty:
        ax.legend()
    fig.tight_layout()
    return fig


def brier_by_season_figure(seasons: dict[str, pd.DataFrame], baseline: pd.DataFrame):
    """Draw the backtest's chart: each pair's Brier on each predicted season, and the seed baseline's
    (fit on the same training seasons) as a dashed black line. `seasons`: pair name -> its
    madness.backtest.season_scores; `baseline`: one of them (the baseline is the same for every pair)."""
    fig, ax = new_figure(size=(8, 4.5))
    for name, scores in seasons.items():
        ax.plot(scores[names.SEASON], scores[names.SEASON_BRIER], marker="o", label=name)
    ax.plot(
        baseline[names.SEASON],
        baseline[names.SEASON_BASELINE_BRIER],
        color="black",
        linestyle="--",
        marker="s",
        label="seed baseline",
    )
    ax.set(
        title="Backtest: Brier score of each season, predicted from the seasons before it",
        xlabel="predicted season",
        ylabel="Brier score",
    )
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.legend(fontsize="small")
    fig.tight_layout()
    return fig
