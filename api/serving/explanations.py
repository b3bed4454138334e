"""?explain=true on /predict and /v2/predict: per row, the exact TreeSHAP contributions (log-odds).

The explainer is the model bundle's (accidents.model.explain: numpy over the tree arrays, no shap or
pandas in the API process), built once per model version. Computed on the inference thread
(~3 ms a row for the seed model): the event loop keeps answering other requests meanwhile.
- /predict: the contributions of the seed contract's 28 inputs, the request's own fields;
- /v2/predict: the contributions of the report-time model's 95 features and, credited through
  accidents.report_time.provenance, of the report's fields ("vehicles[].users[].catu").
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from accidents.features import FEATURE_NAMES
from accidents.model.model_store import ModelBundle
from accidents.report_time.features import REPORT_FEATURES
from accidents.report_time.provenance import field_credit
from api.serving.prediction import PayloadError, Problem


def check_explainable(n_rows: int, max_rows: int, field: str = "instances") -> None:
    """A clear 422 above the explanation cap (EXPLAIN_MAX_ROWS), at the body's list `field`."""
    if n_rows > max_rows:
        msg = f"explanations of {n_rows} rows requested: at most {max_rows} rows per request with explain=true"
        raise PayloadError([Problem((field,), msg, "too_long")])


def _largest(values: np.ndarray, top: int) -> list[int]:
    """Positions of the `top` largest values by absolute size, largest first (stable on ties)."""
    return np.argsort(-np.abs(values), kind="stable")[:top].tolist()


def explain_rows(bundle: ModelBundle, rows: np.ndarray, top: int) -> list[dict[str, Any]]:
    """One explanation per row: base value, raw score, the `top` largest contributions and all 28.
    Raises accidents.model.explain.ExplainError for a model family without an explainer."""
    explainer = bundle.explainer()
    contributions, raw = explainer.shap_values(rows)
    base = explainer.base_value
    explained = []
    for values, row, score in zip(rows.tolist(), contributions, raw.tolist(), strict=True):
        explained.append({
            "base_value": base,
            "raw_score": score,
            "top": [{"feature": FEATURE_NAMES[i], "value": None if math.isnan(values[i]) else values[i],
                     "contribution": float(row[i])} for i in _largest(row, top)],
            "contributions": dict(zip(FEATURE_NAMES, row.tolist(), strict=True)),
        })  # fmt: skip
    return explained


def explain_reports(bundle: ModelBundle, rows: np.ndarray, top: int) -> list[dict[str, Any]]:
    """One explanation per report (its 95 feature values in `rows`): base value, raw score, the
    `top` request fields by contribution, every field's and every feature's contribution."""
    explainer = bundle.explainer()
    contributions, raw = explainer.shap_values(rows)
    credit = field_credit()
    by_field = credit.of(contributions)
    base = explainer.base_value
    explained = []
    for features, fields, score in zip(contributions, by_field, raw.tolist(), strict=True):
        explained.append({
            "base_value": base,
            "raw_score": score,
            "top": [{"field": credit.fields[i], "contribution": float(fields[i])} for i in _largest(fields, top)],
            "fields": dict(zip(credit.fields, fields.tolist(), strict=True)),
            "features": dict(zip(REPORT_FEATURES, features.tolist(), strict=True)),
        })  # fmt: skip
    return explained
