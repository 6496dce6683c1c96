"""madness.plots: what the calibration figure draws, from arrays built here."""

from __future__ import annotations

import numpy as np

from madness import plots, scoring


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
