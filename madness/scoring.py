"""Scores of probabilistic predictions, and the seed-difference baseline they must beat."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from madness import names

EPS = 1e-15


def brier(y, p) -> float:
    """Return the Brier score: the mean squared difference between the probabilities `p` and the outcomes `y`."""
    return float(np.mean((np.asarray(p, dtype="float64") - np.asarray(y, dtype="float64")) ** 2))


def log_loss(y, p) -> float:
    """Return the log loss of the probabilities `p` (clipped to [EPS, 1 - EPS]) against the outcomes `y`."""
    y = np.asarray(y, dtype="float64")
    p = np.clip(np.asarray(p, dtype="float64"), EPS, 1 - EPS)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def accuracy(y, p) -> float:
    """Return the share of rows whose prediction (above 0.5 or not) matches the outcome."""
    return float(np.mean((np.asarray(p) > 0.5) == (np.asarray(y) > 0.5)))


def all_scores(y, p) -> dict[str, float]:
    """Return the Brier, log loss and accuracy of `p` against `y`, keyed by their metric names."""
    return {names.BRIER: brier(y, p), names.LOG_LOSS: log_loss(y, p), names.ACCURACY: accuracy(y, p)}


def seed_spread(y, member_probabilities) -> tuple[list[float], float, float]:
    """Return each member's Brier on the same rows, their mean and sample standard deviation (n - 1: the
    members are a sample of the seeds one could have drawn). Needs two members or more."""
    briers = [brier(y, p) for p in member_probabilities]
    if len(briers) < 2:
        raise ValueError(f"a spread needs two members or more, got {len(briers)}")
    return briers, float(np.mean(briers)), float(np.std(briers, ddof=1))


BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 0  # fixed: the same predictions give the same interval, run after run
BOOTSTRAP_LEVEL = 0.95


@dataclass(frozen=True)
class Interval:
    """An estimate and the low and high bounds of its interval."""

    estimate: float
    low: float
    high: float

    @property
    def excludes_zero(self) -> bool:
        """Return whether the interval lies wholly on one side of zero."""
        return self.low > 0 or self.high < 0


def game_labels(games: pd.DataFrame) -> np.ndarray:
    """Return one integer per game, shared by its two rows (the game from each team's side)."""
    low = np.minimum(games[names.T1_TEAM], games[names.T2_TEAM])
    high = np.maximum(games[names.T1_TEAM], games[names.T2_TEAM])
    return pd.MultiIndex.from_arrays([games[names.SEASON].to_numpy(), low.to_numpy(), high.to_numpy()]).factorize()[0]


def paired_brier_difference(
    y, p_a, p_b, games: np.ndarray, resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED
) -> Interval:
    """Brier(p_a) - Brier(p_b) on the same rows, with a percentile interval (BOOTSTRAP_LEVEL) from
    resampling whole games with replacement (`games`: game_labels of the rows): both rows of a game
    go together, and both predictors are scored on each resampled set, so what the games have in
    common cancels out of the difference."""
    y = np.asarray(y, dtype="float64")
    per_row = (np.asarray(p_a, dtype="float64") - y) ** 2 - (np.asarray(p_b, dtype="float64") - y) ** 2
    count = int(games.max()) + 1
    per_game, rows = np.bincount(games, per_row, count), np.bincount(games, minlength=count).astype("float64")
    picks = np.random.default_rng(seed).integers(0, count, size=(resamples, count))
    diffs = per_game[picks].sum(axis=1) / rows[picks].sum(axis=1)
    tail = (1 - BOOTSTRAP_LEVEL) / 2 * 100
    low, high = np.percentile(diffs, [tail, 100 - tail])
    return Interval(brier(y, p_a) - brier(y, p_b), float(low), float(high))


def seed_difference(games: pd.DataFrame) -> np.ndarray:
    """Return team 1's seed number minus team 2's, as the one-column input of the seed baseline."""
    return (
        (games[f"{names.T1}{names.SEED_NUM}"] - games[f"{names.T2}{names.SEED_NUM}"])
        .to_numpy(dtype="float64")
        .reshape(-1, 1)
    )


def seed_baseline(train_games: pd.DataFrame, test_games: pd.DataFrame) -> np.ndarray:
    """P(team 1 wins) from a logistic regression on seed difference, fit on the training games."""
    from sklearn.linear_model import LogisticRegression

    fitted = LogisticRegression().fit(seed_difference(train_games), train_games[names.TARGET].to_numpy())
    return fitted.predict_proba(seed_difference(test_games))[:, 1]


def reliability(y, p, bins: int = 10) -> pd.DataFrame:
    """Mean prediction and observed frequency per probability bin (for a calibration plot); bins
    [0, 0.1), [0.1, 0.2), ..., [0.9, 1.0], and only those holding a prediction. Not sklearn's
    calibration_curve, which puts a prediction on a bin edge in the bin below ((0.4, 0.5]): the seed
    baseline predicts exactly 0.5 for every game between equal seeds."""
    frame = pd.DataFrame({"p": np.asarray(p, dtype="float64"), "y": np.asarray(y, dtype="float64")})
    frame["bin"] = np.minimum((frame["p"] * bins).astype(int), bins - 1)
    return frame.groupby("bin").agg(mean_pred=("p", "mean"), observed=("y", "mean"), count=("y", "size")).reset_index()


# Probabilities whose standard deviation over the games is below this say the same thing of every
# game: a network that saturated or collapsed (e.g. a learning rate too high), whatever its Brier.
CONSTANT_SD = 0.01


def is_constant(probabilities) -> bool:
    """Return whether a model gives about the same probability to every game (sd below CONSTANT_SD)."""
    return float(np.std(np.asarray(probabilities, dtype="float64"))) < CONSTANT_SD
