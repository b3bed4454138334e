"""The feature contract's vectorized check agrees with the per-value rule on every feature."""

from __future__ import annotations

import math

import numpy as np
import pytest

from accidents.features import FEATURES, SEED_EXAMPLE, MatrixCheck


def candidates(feature) -> list[float | None]:
    """Valid and invalid values around every edge of the feature's domain."""
    values: list[float | None] = [None, 0.5, -1.0, 1e300, -1e300, math.inf, -math.inf]
    if feature.codes is not None:
        low, high = min(feature.codes), max(feature.codes)
        values += [float(code) for code in range(low - 2, high + 3)] + [low + 0.5, high + 0.001]
    else:
        low, high = feature.minimum, feature.maximum
        values += [low, high, low - 1, high + 1, low - 1e-9, high + 1e-9, (low + high) / 2 + 0.25]
    return values


@pytest.mark.parametrize("feature", FEATURES, ids=[feature.name for feature in FEATURES])
def test_matrix_check_agrees_with_the_per_value_rule(feature):
    check = MatrixCheck()
    index = FEATURES.index(feature)
    for value in candidates(feature):
        matrix = np.tile(np.asarray(SEED_EXAMPLE, dtype=float), (3, 1))
        matrix[1, index] = math.nan if value is None else value
        expected = feature.violation(value) is None
        assert check.accepts(matrix) is expected, (feature.name, value)


def test_matrix_check_accepts_valid_data_with_nulls_where_allowed():
    check = MatrixCheck()
    matrix = np.tile(np.asarray(SEED_EXAMPLE, dtype=float), (5, 1))
    nullable = [i for i, feature in enumerate(FEATURES) if feature.nullable]
    assert nullable
    matrix[:, nullable] = math.nan
    assert check.accepts(matrix)
