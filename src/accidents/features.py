"""The feature contract: the 28 model inputs, their order, types and valid domains.

Order and names are the seed API's `features` list. Domains are the values each feature can
take *after* preprocessing (codes from the official BAAC description, grouped as the
preprocessing groups them): the API validates requests against them, the pipeline checks
its output against them, the tests generate data from them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np

TARGET = "grav"
# Kept beside the 28 features in the processed splits, never model inputs: the accident's
# official id (joins logged predictions with labels) and its date (temporal splits, per-month
# evaluation). ACCIDENT_ID values are strings of digits (BAAC `Num_Acc`, e.g. "202100000001"),
# ACCIDENT_DATE values ISO dates ("2021-07-14").
ACCIDENT_ID = "Num_Acc"
ACCIDENT_DATE = "date"


@dataclass(frozen=True)
class Feature:
    name: str
    description: str
    integer: bool = True
    codes: frozenset[int] | None = None  # allowed codes, for categorical features
    minimum: float | None = None  # inclusive range, for numeric features
    maximum: float | None = None
    nullable: bool = False  # may be missing (null/NaN): the model handles missing values

    def rule(self) -> str:
        """Human-readable domain, used in validation errors and the docs."""
        if self.codes is not None:
            domain = "one of " + ", ".join(str(code) for code in sorted(self.codes))
        else:
            kind = "an integer" if self.integer else "a number"
            domain = f"{kind} in [{_fmt(self.minimum)}, {_fmt(self.maximum)}]"
        return domain + (" or null" if self.nullable else "")

    def json_schema(self) -> dict[str, Any]:
        """The exact domain as JSON Schema (codes or inclusive range, nullable or not): what the
        API's OpenAPI documents and its fuzzer generates from, as `violation` checks it."""
        kind = "integer" if self.integer else "number"
        schema: dict[str, Any] = {
            "type": [kind, "null"] if self.nullable else kind,
            "description": f"{self.description}: {self.rule()}",
        }
        if self.codes is not None:
            schema["enum"] = [*sorted(self.codes), *([None] if self.nullable else [])]
        else:
            schema["minimum"] = self.minimum
            schema["maximum"] = self.maximum
        return schema

    def violation(self, value: object) -> str | None:
        """Why `value` is outside the domain, or None when it is valid."""
        if value is None:
            return None if self.nullable else f"is required: must be {self.rule()}"
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f"must be a number ({self.rule()}), got {type(value).__name__}"
        if not math.isfinite(value):
            return f"must be finite ({self.rule()})"
        if self.integer and value != int(value):
            return f"must be a whole number ({self.rule()}), got {value}"
        if self.codes is not None:
            return None if int(value) in self.codes else f"must be {self.rule()}, got {_fmt(value)}"
        if self.minimum is not None and value < self.minimum:
            return f"must be {self.rule()}, got {_fmt(value)}"
        if self.maximum is not None and value > self.maximum:
            return f"must be {self.rule()}, got {_fmt(value)}"
        return None

    def accepts(self, values: np.ndarray) -> np.ndarray:
        """Vectorized `violation(value) is None` for present values (NaN: False), on a float array."""
        values = np.asarray(values, dtype=float)
        if self.codes is not None:
            return in_codes(values, self.codes)
        valid = np.isfinite(values)
        if self.minimum is not None:
            valid &= values >= self.minimum
        if self.maximum is not None:
            valid &= values <= self.maximum
        if self.integer:
            valid &= values == np.floor(values)
        return valid


@cache
def _code_table(codes: frozenset[int]) -> np.ndarray:
    """`codes` as a lookup table: True at each code, False elsewhere and at the last entry."""
    if min(codes) < 0:
        raise ValueError(f"codes must be non-negative, got {sorted(codes)}")
    table = np.zeros(max(codes) + 2, dtype=bool)
    table[sorted(codes)] = True
    return table


def in_codes(values: np.ndarray, codes: Iterable[int]) -> np.ndarray:
    """`np.isin(values, codes)` for a float array and non-negative integer codes (NaN: False), by a
    lookup table: 4 us instead of 21 for one value, 11 instead of 47 for 2,300 (27 codes, measured
    in process). The report-time features check ~60 columns this way per request."""
    table = _code_table(codes if isinstance(codes, frozenset) else frozenset(codes))
    outside = len(table) - 1  # False there
    values = np.asarray(values, dtype=float)
    safe = np.where((values >= 0) & (values < outside), values, outside)  # NaN, inf, negatives: outside
    index = safe.astype(np.intp)
    return table[index] & (index == safe)  # a fraction (2.5) is no code


def _fmt(value: float | None) -> str:
    if value is None:
        return "-inf"
    return str(int(value)) if float(value).is_integer() else str(value)


def _codes(values: Iterable[int]) -> frozenset[int]:
    return frozenset(values)


# Grouping of the official vehicle categories (catv) into 6 families, as the seed did;
# codes 0 (undetermined), 80 and 99 (other) map to 0, which preprocessing turns into NaN.
CATV_GROUPS: dict[int, int] = {
    0: 0, 1: 1, 2: 1, 3: 2, 4: 1, 5: 1, 6: 6, 7: 2, 8: 5, 9: 5, 10: 5, 11: 5, 12: 5,
    13: 4, 14: 4, 15: 4, 16: 4, 17: 4, 18: 3, 19: 3, 20: 4, 21: 4, 30: 1, 31: 1, 32: 1,
    33: 1, 34: 1, 35: 6, 36: 6, 37: 3, 38: 3, 39: 3, 40: 3, 41: 1, 42: 1, 43: 1, 50: 1,
    60: 1, 80: 0, 99: 0,
}  # fmt: skip

# Atmospheric conditions (atm): 1 normal, 8 other, 9... -> 0; rain/snow/fog/wind/glare -> 1.
ATM_GROUPS: dict[int, int] = {1: 0, 2: 1, 3: 1, 4: 1, 5: 1, 6: 1, 7: 1, 8: 0, 9: 0}

FEATURES: tuple[Feature, ...] = (
    Feature("place", "seat of the most severely injured user (10 = pedestrian)", codes=_codes(range(1, 11))),
    Feature("catu", "user category: 1 driver, 2 passenger, 3 pedestrian", codes=_codes((1, 2, 3))),
    Feature("sexe", "1 male, 2 female", codes=_codes((1, 2))),
    Feature("secu1", "first safety equipment (0 none .. 9 other)", codes=_codes(range(0, 10))),
    Feature("year_acc", "year of the accident", minimum=2005, maximum=2100),
    Feature("victim_age", "age in years of the most severely injured user", integer=False,
            minimum=0, maximum=120, nullable=True),
    Feature("catv", "vehicle category, grouped into 6 families", codes=_codes(range(1, 7))),
    Feature("obsm", "mobile obstacle hit (0 none, 1 pedestrian, 2 vehicle, 4 rail, 5 animal, 6 wild animal, 9 other)",
            codes=_codes((0, 1, 2, 4, 5, 6, 9))),
    Feature("motor", "engine type (1 hydrocarbon .. 6 other)", codes=_codes(range(1, 7))),
    Feature("catr", "road category (1 motorway .. 9 other)", codes=_codes((1, 2, 3, 4, 5, 6, 7, 9))),
    Feature("circ", "traffic regime (1 one-way .. 4 variable lanes)", codes=_codes(range(1, 5))),
    Feature("surf", "surface condition (1 normal .. 9 other)", codes=_codes(range(1, 10))),
    Feature("situ", "situation (0 none, 1 on road .. 8 other)", codes=_codes((0, 1, 2, 3, 4, 5, 6, 8)),
            nullable=True),
    Feature("vma", "speed limit in km/h (raw data carries some typos up to 901)", minimum=1, maximum=999),
    Feature("jour", "day of month", codes=_codes(range(1, 32))),
    Feature("mois", "month", codes=_codes(range(1, 13))),
    Feature("lum", "light (1 daylight .. 5 night with lighting)", codes=_codes(range(1, 6))),
    Feature("dep", "department code (Corsica 2A/2B -> 201/202, overseas 971..988)", minimum=1, maximum=999),
    Feature("com", "INSEE commune code (Corsica 2A/2B prefixes -> 201/202)", minimum=1, maximum=999999),
    Feature("agg_", "1 outside, 2 inside built-up area", codes=_codes((1, 2))),
    Feature("int", "intersection type (1 none .. 9 other)", codes=_codes(range(1, 10))),
    Feature("atm", "adverse weather: 0 normal/other, 1 rain, snow, fog, wind, glare", codes=_codes((0, 1))),
    Feature("col", "collision type (1 frontal .. 7 none)", codes=_codes(range(1, 8))),
    Feature("lat", "latitude (WGS84)", integer=False, minimum=-90, maximum=90),
    Feature("long", "longitude (WGS84)", integer=False, minimum=-180, maximum=180),
    Feature("hour", "hour of the accident", codes=_codes(range(0, 24))),
    Feature("nb_victim", "number of users involved", minimum=1, maximum=500),
    Feature("nb_vehicules", "number of vehicles involved", minimum=1, maximum=500),
)  # fmt: skip

FEATURE_NAMES: tuple[str, ...] = tuple(feature.name for feature in FEATURES)
FEATURES_BY_NAME: dict[str, Feature] = {feature.name: feature for feature in FEATURES}
N_FEATURES = len(FEATURES)

# The seed API's example request, in contract order: docs, tests and benchmarks use it.
SEED_EXAMPLE: tuple[float, ...] = (
    10, 3, 1, 0.0, 2021, 60, 2, 1, 1, 3, 2, 1, 1, 50, 7, 12, 5, 77, 77317, 2, 1, 0, 6,
    48.60, 2.89, 17, 2, 1,
)  # fmt: skip


def row_violations(values: Iterable[object]) -> list[tuple[str, str]]:
    """(feature name, reason) for every value of one row outside its domain."""
    return [
        (feature.name, reason)
        for feature, value in zip(FEATURES, values, strict=True)
        if (reason := feature.violation(value)) is not None
    ]


class MatrixCheck:
    """Vectorized twin of `Feature.violation` for a whole float matrix (NaN = null), for big
    batches: a few numpy operations answer "is every value valid?". It only says yes or no;
    the per-value check names the problems."""

    def __init__(self, features: tuple[Feature, ...] = FEATURES):
        def bounds(feature: Feature) -> tuple[float, float]:
            if feature.codes is not None:
                return min(feature.codes), max(feature.codes)
            low, high = feature.minimum, feature.maximum
            return (-math.inf if low is None else low), (math.inf if high is None else high)

        self._low, self._high = (np.array(column, dtype=float) for column in zip(*map(bounds, features), strict=True))
        self._integer = np.array([feature.integer for feature in features])
        self._nullable = np.array([feature.nullable for feature in features])
        self._code_columns = np.array([i for i, feature in enumerate(features) if feature.codes is not None])
        coded = [features[i].codes or frozenset() for i in self._code_columns]
        self._allowed = np.zeros((len(coded), max(map(max, coded)) + 1), dtype=bool)  # [coded feature, code]
        for row, codes in enumerate(coded):
            self._allowed[row, sorted(codes)] = True
        self._placeholder = np.array(SEED_EXAMPLE, dtype=float)  # a valid value per feature, put in nulls' place

    def accepts(self, matrix: np.ndarray) -> bool:
        missing = np.isnan(matrix)
        if (missing & ~self._nullable).any():
            return False
        values = np.where(missing, self._placeholder, matrix)
        if not np.isfinite(values).all() or ((values < self._low) | (values > self._high)).any():
            return False
        if (self._integer & (values != np.floor(values))).any():
            return False
        codes = values[:, self._code_columns].astype(np.int64)  # whole numbers within [min, max] code
        return bool(self._allowed[np.arange(len(self._code_columns)), codes].all())


assert N_FEATURES == 28 and not row_violations(SEED_EXAMPLE)
