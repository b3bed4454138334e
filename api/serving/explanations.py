"""?explain=true on /predict: per row, the exact TreeSHAP contributions of the 28 inputs (log-odds).

The explainer is the model bundle's (accidents.model.explain: numpy over the tree arrays, no shap or
pandas in the API process), built once per model version. Computed on the inference thread
(~3 ms a row): the event loop keeps answering other requests meanwhile.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from accidents.features import FEATURE_NAMES
from accidents.model.model_store import ModelBundle
from api.serving.prediction import PayloadError, Problem


def check_explainable(n_rows: int, max_rows: int) -> None:
    """A clear 422 above the explanation cap (EXPLAIN_MAX_ROWS)."""
    if n_rows > max_rows:
        msg = f"explanations of {n_rows} rows requested: at most {max_rows} rows per request with explain=true"
        raise PayloadError([Problem(("instances",), msg, "too_long")])


def explain_rows(bundle: ModelBundle, rows: np.ndarray, top: int) -> list[dict[str, Any]]:
    """One explanation per row: base value, raw score, the `top` largest contributions and all 28.
    Raises accidents.model.explain.ExplainError for a model family without an explainer."""
    explainer = bundle.explainer()
    contributions, raw = explainer.shap_values(rows)
    base = explainer.base_value
    explained = []
    for values, row, score in zip(rows.tolist(), contributions, raw.tolist(), strict=True):
        order = np.argsort(-np.abs(row), kind="stable")[:top]
        explained.append({
            "base_value": base,
            "raw_score": score,
            "top": [{"feature": FEATURE_NAMES[i], "value": None if math.isnan(values[i]) else values[i],
                     "contribution": float(row[i])} for i in order.tolist()],
            "contributions": dict(zip(FEATURE_NAMES, row.tolist(), strict=True)),
        })  # fmt: skip
    return explained
