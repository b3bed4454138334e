"""The report-time model: out-of-fold target encodings, then HistGradientBoosting (the seed's shape).

The configuration is `params.yaml` `report_time:` (chosen on validation by
accidents.report_time.experiment, docs/report-time-model.md); the experiment and the pipeline's
`train` stage fit it with this one function. Measured (train 2020-01..2021-03 of 2020 + 2021,
OMP_NUM_THREADS=1, shared machine): 40 s, 323 iterations, a 4.35 MB model.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import TargetEncoder

from accidents.report_time.features import REPORT_FEATURES

# Codes the trees may split as categories (HistGradientBoosting's native categorical support):
# small official code lists whose order means nothing.
CATEGORICAL = ("lum", "int", "atm", "col", "catr", "circ", "vosp", "prof", "plan", "surf", "infra", "situ",
               "fixed_obstacle", "pedestrian_location", "pedestrian_action",
               *(f"{side}_{name}" for side in ("lightest", "heaviest") for name in ("catv", "choc", "manv", "obs",
                                                                                       "obsm")))  # fmt: skip


def build_model(params: dict[str, Any]) -> Pipeline:
    """Out-of-fold target encodings of the high-cardinality codes, then the raw features, into
    HistGradientBoosting (the seed's model shape, over the report-time features)."""
    encoded = [REPORT_FEATURES.index(name) for name in params["target_encoding"]]
    folds = StratifiedKFold(5, shuffle=True, random_state=params["seed"])
    encoder = ColumnTransformer([
        ("target", TargetEncoder(target_type="binary", smooth="auto", cv=folds), encoded),
        ("raw", "passthrough", list(range(len(REPORT_FEATURES)))),
    ])  # fmt: skip
    categorical = (
        [len(encoded) + REPORT_FEATURES.index(name) for name in CATEGORICAL] if params["categorical"] else None
    )
    model = HistGradientBoostingClassifier(random_state=params["seed"], categorical_features=categorical,
                                           **params["hist_gradient_boosting"])  # fmt: skip
    return Pipeline([("encode", encoder), ("model", model)])


def fit(
    params: dict[str, Any], x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray, y_val: np.ndarray
) -> Pipeline:
    """Fit on the training period (REPORT_FEATURES order); early stopping on the validation period
    or a share of train (`early_stopping_on`). The signature of modeling.fit_model: `train` fits
    either model the same way."""
    model = build_model(params)
    if params["early_stopping_on"] == "validation":
        encoder = model.named_steps["encode"]
        features = encoder.fit_transform(x_train, y_train)
        model.named_steps["model"].fit(features, y_train, X_val=encoder.transform(x_val), y_val=y_val)
    else:
        model.fit(x_train, y_train)
    return model
