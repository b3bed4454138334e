"""Synthetic accidents for demos without data: valid against the contract, NOT real."""

from __future__ import annotations

import numpy as np
import pandas as pd

from accidents.features import ACCIDENT_DATE, ACCIDENT_ID, FEATURES, TARGET

YEAR = 2021  # every synthetic accident happens this year


def generate(rows: int, seed: int) -> pd.DataFrame:
    """Rows drawn from each feature's domain; the target follows a plausible logistic rule."""
    rng = np.random.default_rng(seed)
    columns: dict[str, np.ndarray] = {}
    for feature in FEATURES:
        if feature.codes is not None:
            columns[feature.name] = rng.choice(sorted(feature.codes), size=rows).astype(float)
        elif feature.name == "year_acc":
            columns[feature.name] = np.full(rows, float(YEAR))
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
    # Ids shaped like the official ones (year + 8 digits, 99 prefix: never an official accident),
    # dates from the drawn month with the day clipped to the month's length (no 30 February).
    frame.insert(0, ACCIDENT_ID, [f"{YEAR}99{index:06d}" for index in range(rows)])
    month_start = pd.to_datetime(pd.DataFrame({"year": YEAR, "month": frame["mois"].astype(int), "day": 1}))
    days = np.minimum(frame["jour"].astype(int), month_start.dt.days_in_month)
    frame["jour"] = days.astype(float)
    frame.insert(1, ACCIDENT_DATE, (month_start + pd.to_timedelta(days - 1, unit="D")).dt.strftime("%Y-%m-%d"))
    return frame
