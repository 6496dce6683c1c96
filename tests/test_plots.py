"""madness.plots: what the calibration and Brier figures draw, from arrays built here."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from madness import names, plots, scoring


def test_calibration_figure_draws_the_diagonal_and_the_reliability_of_model_and_baseline():
    y = [1, 0, 1, 0, 1, 0]
    p_model, p_baseline = [0.9, 0.15, 0.62, 0.35, 0.66, 0.08], [0.5, 0.5, 0.7, 0.3, 0.7, 0.3]
    ax = plots.calibration_figure(y, p_model, p_baseline, "Calibration").axes[0]
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert list(lines) == ["perfect calibration", "model", "seed baseline"]
    np.testing.assert_array_equal(lines["perfect calibration"].get_xydata(), [[0, 0], [1, 1]])
    for label, p in (("model", p_model), ("seed baseline", p_baseline)):
        table = scoring.reliability(y, p)
        np.testing.assert_array_equal(lines[label].get_xdata(), table["mean_pred"])
        np.testing.assert_array_equal(lines[label].get_ydata(), table["observed"])
    assert (ax.get_xlim(), ax.get_ylim(), ax.get_title()) == ((0, 1), (0, 1), "Calibration")


def brier_chart(sd: list[float]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "model": ["small", "small", "medium"],
            "lr": [0.1, 0.001, 0.01],
            names.BRIER_MEAN: [0.25, 0.2, 0.21],
            names.BRIER_SD: sd,
        }
    )


def test_the_brier_chart_of_single_seed_runs_draws_one_line_per_model_without_error_bars():
    ax = plots.brier_by_lr_figure(brier_chart([math.nan] * 3)).axes[0]
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert list(lines) == ["small", "medium"] and ax.containers == []
    np.testing.assert_array_equal(lines["small"].get_xydata(), [[0.001, 0.2], [0.1, 0.25]])
    assert ax.get_yaxis().get_label().get_text() == "Brier score (test seasons)"


def test_the_brier_chart_of_several_seeds_draws_the_mean_with_one_sd_error_bars():
    ax = plots.brier_by_lr_figure(brier_chart([0.02, 0.01, 0.005])).axes[0]
    bars = {container.get_label(): container for container in ax.containers}
    assert list(bars) == ["small", "medium"]
    line, _, (vertical,) = bars["small"]
    np.testing.assert_array_equal(line.get_xydata(), [[0.001, 0.2], [0.1, 0.25]])
    # Each bar spans mean - sd to mean + sd at its learning rate.
    spans = [segment[:, 1] for segment in vertical.get_segments()]
    np.testing.assert_allclose(spans, [[0.19, 0.21], [0.23, 0.27]])
    assert "mean +- sd over seeds" in ax.get_yaxis().get_label().get_text()


def test_brier_by_season_figure_draws_each_pair_and_the_baseline_by_season():
    def scores(brier: list[float]) -> pd.DataFrame:
        return pd.DataFrame(
            {
                names.SEASON: [2021, 2022, 2023],
                names.SEASON_GAMES: [63, 63, 63],
                names.SEASON_BRIER: brier,
                names.SEASON_BASELINE_BRIER: [0.17, 0.19, 0.16],
            }
        )

    pairs = {"small_0.001": scores([0.15, 0.18, 0.14]), "medium_0.01": scores([0.16, 0.17, 0.15])}
    ax = plots.brier_by_season_figure(pairs, pairs["small_0.001"]).axes[0]
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert list(lines) == ["small_0.001", "medium_0.01", "seed baseline"]
    np.testing.assert_array_equal(lines["medium_0.01"].get_xydata(), [[2021, 0.16], [2022, 0.17], [2023, 0.15]])
    np.testing.assert_array_equal(lines["seed baseline"].get_ydata(), [0.17, 0.19, 0.16])
    assert lines["seed baseline"].get_linestyle() == "--"
    assert ax.get_xlabel() == "predicted season"
