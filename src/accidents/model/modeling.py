"""Model families, threshold tuning and scoring, shared by `train`, `evaluate` and `backtest`.

The model takes the 28 contract features in contract order, nothing else: derived inputs are
computed inside it. With `train.target_encoding` (default: `com`, `dep`), the model is a
scikit-learn Pipeline whose first step adds, for each of those high-cardinality codes, its
target encoding (out-of-fold on the training rows: each row's encoding is learnt from the other
folds, so the trees never see their own label through it), then the raw 28 features; the API
applies the same transform because it is part of the model.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score, roc_auc_score
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import TargetEncoder

from accidents.features import FEATURE_NAMES, TARGET

FAMILIES = ("hist_gradient_boosting", "random_forest")
ENCODER_STEP, MODEL_STEP = "encode", "model"


def build_estimator(params: dict[str, Any]) -> Any:
    """The unfitted tree model of `train.family` with its hyperparameters."""
    family = params["family"]
    if family not in FAMILIES:
        raise ValueError(f"train.family must be one of {FAMILIES}, got {family!r}")
    hyper = dict(params.get(family) or {})
    if family == "hist_gradient_boosting":
        return HistGradientBoostingClassifier(random_state=params["seed"], **hyper)
    return RandomForestClassifier(random_state=params["seed"], **hyper)


def build_encoder(params: dict[str, Any]) -> ColumnTransformer | None:
    """Out-of-fold target encodings of `train.target_encoding`, then the 28 raw features."""
    encoded = list(params.get("target_encoding") or [])
    unknown = sorted(set(encoded) - set(FEATURE_NAMES))
    if unknown:
        raise ValueError(f"train.target_encoding names features outside the contract: {unknown}")
    if not encoded:
        return None
    folds = StratifiedKFold(int(params.get("target_encoding_folds", 5)), shuffle=True, random_state=params["seed"])
    encoder = TargetEncoder(target_type="binary", smooth="auto", cv=folds)
    columns = [FEATURE_NAMES.index(name) for name in encoded]
    return ColumnTransformer([("target", encoder, columns), ("raw", "passthrough", list(range(len(FEATURE_NAMES))))])


def fit_model(
    params: dict[str, Any], x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray, y_val: np.ndarray
) -> Any:
    """Fit the configured model; HistGradientBoosting stops early on the validation period.

    The encoder is fitted on the training rows only (cross-fitted encodings for them), and the
    validation rows are encoded as the served model will encode them.
    """
    estimator = build_estimator(params)
    encoder = build_encoder(params)
    features, val_features = x_train, x_val
    if encoder is not None:
        features = encoder.fit_transform(x_train, y_train)
        val_features = encoder.transform(x_val)
    stops_on_validation = (
        isinstance(estimator, HistGradientBoostingClassifier)
        and estimator.early_stopping in (True, "auto")
        and params.get("early_stopping_on", "validation") == "validation"
    )
    if stops_on_validation:
        estimator.fit(features, y_train, X_val=val_features, y_val=y_val)
    else:
        estimator.fit(features, y_train)
    return estimator if encoder is None else Pipeline([(ENCODER_STEP, encoder), (MODEL_STEP, estimator)])


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


def score_by_month(dates: pd.Series, y_true: np.ndarray, probability: np.ndarray, threshold: float) -> pd.DataFrame:
    """One row per calendar month: rows, positive rate, ROC AUC (NaN with one class only), F1."""
    months = pd.to_datetime(dates).dt.strftime("%Y-%m").to_numpy()
    rows = []
    for month in sorted(set(months)):
        mask = months == month
        truth, prob = y_true[mask], probability[mask]
        auc = float(roc_auc_score(truth, prob)) if len(set(truth)) == 2 else float("nan")
        rows.append({
            "month": month,
            "rows": int(mask.sum()),
            "positive_rate": float(truth.mean()),
            "predicted_positive_rate": float((prob >= threshold).mean()),
            "roc_auc": auc,
            "f1": float(f1_score(truth, prob >= threshold, zero_division=0)),
        })  # fmt: skip
    return pd.DataFrame(rows)
