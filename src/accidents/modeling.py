"""Model families, threshold tuning and scoring, shared by `train` and `evaluate`."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score, roc_auc_score

from accidents.features import FEATURE_NAMES, TARGET

FAMILIES = ("hist_gradient_boosting", "random_forest")


def build_model(params: dict[str, Any]) -> Any:
    family = params["family"]
    if family not in FAMILIES:
        raise ValueError(f"train.family must be one of {FAMILIES}, got {family!r}")
    hyper = dict(params.get(family) or {})
    if family == "hist_gradient_boosting":
        return HistGradientBoostingClassifier(random_state=params["seed"], **hyper)
    return RandomForestClassifier(random_state=params["seed"], **hyper)


def split_xy(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Features as a float array in contract order (what the API feeds the model) and target."""
    return frame[list(FEATURE_NAMES)].to_numpy(dtype=float), frame[TARGET].to_numpy(dtype=int)


def best_threshold(y_true: np.ndarray, probability: np.ndarray) -> float:
    """The decision threshold that maximises F1 on (validation) data."""
    candidates = np.unique(np.quantile(probability, np.linspace(0.01, 0.99, 197)))
    scores = [f1_score(y_true, probability >= threshold, zero_division=0) for threshold in candidates]
    return float(candidates[int(np.argmax(scores))])


def score(y_true: np.ndarray, probability: np.ndarray, threshold: float) -> dict[str, float]:
    predicted = probability >= threshold
    return {
        "roc_auc": float(roc_auc_score(y_true, probability)),
        "f1": float(f1_score(y_true, predicted, zero_division=0)),
        "precision": float(precision_score(y_true, predicted, zero_division=0)),
        "recall": float(recall_score(y_true, predicted, zero_division=0)),
        "accuracy": float(accuracy_score(y_true, predicted)),
        "threshold": float(threshold),
    }
