"""Scores of probabilistic predictions, and the seed-difference baseline they must beat."""

from __future__ import annotations

import numpy as np
import pandas as pd

from madness import names as n

EPS = 1e-15


def brier(y, p) -> float:
    return float(np.mean((np.asarray(p, dtype="float64") - np.asarray(y, dtype="float64")) ** 2))


def log_loss(y, p) -> float:
    y = np.asarray(y, dtype="float64")
    p = np.clip(np.asarray(p, dtype="float64"), EPS, 1 - EPS)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def accuracy(y, p) -> float:
    return float(np.mean((np.asarray(p) > 0.5) == (np.asarray(y) > 0.5)))


def all_scores(y, p) -> dict[str, float]:
    return {n.BRIER: brier(y, p), n.LOG_LOSS: log_loss(y, p), n.ACCURACY: accuracy(y, p)}


def seed_difference(games: pd.DataFrame) -> np.ndarray:
    return (games[f"{n.T1}{n.SEED_NUM}"] - games[f"{n.T2}{n.SEED_NUM}"]).to_numpy(dtype="float64").reshape(-1, 1)


def seed_baseline(train_games: pd.DataFrame, test_games: pd.DataFrame) -> np.ndarray:
    """P(team 1 wins) from a logistic regression on seed difference, fit on the training games."""
    from sklearn.linear_model import LogisticRegression

    fitted = LogisticRegression().fit(seed_difference(train_games), train_games[n.TARGET].to_numpy())
    return fitted.predict_proba(seed_difference(test_games))[:, 1]


def reliability(y, p, bins: int = 10) -> pd.DataFrame:
    """Mean prediction and observed frequency per probability bin (for a calibration plot)."""
    frame = pd.DataFrame({"p": np.asarray(p, dtype="float64"), "y": np.asarray(y, dtype="float64")})
    frame["bin"] = np.minimum((frame["p"] * bins).astype(int), bins - 1)
    return frame.groupby("bin").agg(mean_pred=("p", "mean"), observed=("y", "mean"), count=("y", "size")).reset_index()
