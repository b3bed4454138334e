"""Synthetic accidents for demos without data: valid against the contract, NOT real."""

from __future__ import annotations

import numpy as np
import pandas as pd

from accidents.features import FEATURES, TARGET


def generate(rows: int, seed: int) -> pd.DataFrame:
    """Rows drawn from each feature's domain; the target follows a plausible logistic rule."""
    rng = np.random.default_rng(seed)
    columns: dict[str, np.ndarray] = {}
    for feature in FEATURES:
        if feature.codes is not None:
            columns[feature.name] = rng.choice(sorted(feature.codes), size=rows).astype(float)
        elif feature.name == "year_acc":
            columns[feature.name] = np.full(rows, 2021.0)
        else:
            low, high = feature.minimum or 0.0, min(feature.maximum or 100.0, 130.0)
            values = rng.uniform(low, high, size=rows)
            columns[feature.name] = values if not feature.integer else np.floor(values)
    frame = pd.DataFrame(columns)
    frame["nb_victim"] = rng.integers(1, 6, size=rows).astype(float)
    frame["nb_vehicules"] = rng.integers(1, 4, size=rows).astype(float)
    score = (
        0.03 * (frame["vma"] - 60)
        + 1.2 * (frame["catu"] == 3)
        + 0.8 * (frame["agg_"] == 1)
        + 0.015 * (frame["victim_age"] - 40)
        - 0.9
    )
    frame[TARGET] = (rng.uniform(size=rows) < 1 / (1 + np.exp(-score))).astype(int)
    return frame
