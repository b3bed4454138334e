"""Request parsing and validation for /predict: JSON bytes -> one float64 array, or precise errors.

Three payloads, all validated against the feature contract (accidents.features):
  {"features": [28 values in contract order]}         one row (the seed's format)
  {"place": 10, "catu": 3, ...}                         one row, by name (all 28 names)
  {"instances": [row, row, ...]}                        a batch; each row a list or a named object
Each shape may carry the rows' accident ids ("accident_id", or "accident_ids" beside "instances"):
see api.serving.accident_ids.
Nullable features accept null (-> NaN). No DataFrame: the rows go straight into numpy.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from accidents.features import FEATURE_NAMES, FEATURES, FEATURES_BY_NAME, N_FEATURES, Feature, MatrixCheck
from api.serving.accident_ids import IdProblem, take_accident_ids

Loc = tuple[str | int, ...]


@dataclass(frozen=True)
class Problem:
    loc: Loc
    msg: str
    type: str = "value_error"

    def as_dict(self) -> dict[str, Any]:
        return {"loc": ["body", *self.loc], "msg": self.msg, "type": self.type}


class PayloadError(Exception):
    def __init__(self, problems: list[Problem]):
        super().__init__("; ".join(problem.msg for problem in problems))
        self.problems = problems


MAX_REPORTED_PROBLEMS = 50


# From this many rows on, a batch is first checked in one vectorized pass (about 5x faster for
# 1,000 rows); below it the per-value check is cheaper than a handful of numpy calls.
VECTORIZED_MIN_ROWS = 8
PLAIN_VALUE_TYPES = frozenset({int, float, type(None)})
CONTRACT = MatrixCheck()


def _value_check(feature: Feature) -> Callable[[Any], bool]:
    """`feature.violation(value) is None` for the plain values a valid row holds (the same rule in
    the same order: nulls, numbers only, finite, whole, codes, bounds), without building a message."""
    codes, low, high, integer, nullable = (
        feature.codes,
        feature.minimum,
        feature.maximum,
        feature.integer,
        feature.nullable,
    )

    def accepts(value: Any) -> bool:
        kind = type(value)
        if kind is float:
            if not math.isfinite(value) or (integer and value != int(value)):
                return False
        elif kind is not int:  # bool, str, list, ...; None where nulls are allowed
            return value is None and nullable
        if codes is not None:
            return int(value) in codes
        return (low is None or value >= low) and (high is None or value <= high)

    return accepts


# One check per contract column: a valid single row costs ~5 us here instead of ~25 us through the
# per-value path's messages and lists (measured in process, issue #26).
VALUE_CHECKS = tuple(_value_check(feature) for feature in FEATURES)


@dataclass(frozen=True)
class ParsedRequest:
    matrix: np.ndarray  # (n, 28) float64, NaN = null
    accident_ids: list[str | None] | None  # one per row when the caller gave any (api.serving.accident_ids)


def parse_request(body: bytes, max_rows: int) -> ParsedRequest:
    """The validated rows of a /predict body and their accident ids; PayloadError with every problem otherwise."""
    payload = _load_json(body)
    id_problems: list[IdProblem] = []
    accident_ids = take_accident_ids(payload, id_problems)
    if id_problems:
        raise PayloadError([Problem(loc, msg, kind) for loc, msg, kind in id_problems[:MAX_REPORTED_PROBLEMS]])
    return ParsedRequest(_matrix_of(payload, max_rows), accident_ids)


def parse_rows(body: bytes, max_rows: int) -> np.ndarray:
    """The validated (n, 28) float64 matrix of a /predict body; PayloadError with every problem otherwise."""
    return parse_request(body, max_rows).matrix


def _matrix_of(payload: Any, max_rows: int) -> np.ndarray:
    rows, base = _rows_of(payload, max_rows)
    if len(rows) == 1 and (matrix := _valid_single_row(rows[0])) is not None:
        return matrix
    if len(rows) >= VECTORIZED_MIN_ROWS and (matrix := _all_valid_matrix(rows)) is not None:
        return matrix
    problems: list[Problem] = []
    matrix = np.empty((len(rows), N_FEATURES), dtype=np.float64)
    for index, row in enumerate(rows):
        loc = (*base, index) if base == ("instances",) else base
        values = _row_values(row, loc, problems)
        if values is not None:
            matrix[index] = values
        if len(problems) >= MAX_REPORTED_PROBLEMS:
            break
    if problems:
        raise PayloadError(problems[:MAX_REPORTED_PROBLEMS])
    return matrix


def _valid_single_row(row: Any) -> np.ndarray | None:
    """The (1, 28) matrix of a valid list row; None sends it through the per-value check, which
    names each problem."""
    if type(row) is not list or len(row) != N_FEATURES:
        return None
    for accepts, value in zip(VALUE_CHECKS, row, strict=True):
        if not accepts(value):
            return None
    try:
        return np.array([row], dtype=np.float64)  # null -> NaN
    except (OverflowError, ValueError, TypeError):  # an integer too big for a float
        return None


def _all_valid_matrix(rows: list[Any]) -> np.ndarray | None:
    """The matrix when every row is well formed and every value valid; None sends the request
    through the row-by-row check, which names each problem."""
    values = []
    for row in rows:
        if type(row) is dict:
            if row.keys() != FEATURES_BY_NAME.keys():
                return None
            row = [row[name] for name in FEATURE_NAMES]
        elif type(row) is not list or len(row) != N_FEATURES:
            return None
        if not PLAIN_VALUE_TYPES.issuperset(map(type, row)):  # bool, str, list...: not numbers
            return None
        values.append(row)
    try:
        matrix = np.array(values, dtype=np.float64)  # null -> NaN
    except (OverflowError, ValueError, TypeError):
        return None
    return matrix if CONTRACT.accepts(matrix) else None


def _load_json(body: bytes) -> Any:
    if not body.strip():
        raise PayloadError([Problem((), "request body is empty: send a JSON object", "missing")])
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as error:
        # orjson rejects NaN / Infinity literals: values must be finite numbers
        raise PayloadError([Problem((), f"invalid JSON (numbers must be finite; NaN/Infinity are not JSON): {error}",
                                    "json_invalid")]) from None  # fmt: skip


def _rows_of(payload: Any, max_rows: int) -> tuple[list[Any], Loc]:
    if not isinstance(payload, dict):
        raise PayloadError([Problem((), f"expected a JSON object, got {_kind(payload)}", "type_error")])
    if "instances" in payload:
        _only_key(payload, "instances")
        rows = payload["instances"]
        if not isinstance(rows, list) or not rows:
            raise PayloadError([Problem(("instances",), "must be a non-empty list of rows", "type_error")])
        if len(rows) > max_rows:
            msg = f"batch of {len(rows)} rows is larger than the limit of {max_rows}"
            raise PayloadError([Problem(("instances",), msg, "too_long")])
        return rows, ("instances",)
    if "features" in payload:
        _only_key(payload, "features")
        return [payload["features"]], ("features",)
    return [payload], ()


def _only_key(payload: dict[str, Any], key: str) -> None:
    extra = sorted(set(payload) - {key})
    if extra:
        raise PayloadError([Problem((name,), f"unexpected field next to '{key}'", "extra_forbidden") for name in extra])


def _row_values(row: Any, loc: Loc, problems: list[Problem]) -> list[float] | None:
    """Contract-ordered floats (None -> NaN) of one row; appends its problems and returns None if any.

    `loc` locates the row: () for a named object, ("features",), or ("instances", index).
    Each problem's location ends with the feature's name.
    """
    if isinstance(row, list) or loc == ("features",):
        values = _list_values(row, loc, problems)
    elif isinstance(row, dict):
        values = _named_values(row, loc, problems)
    else:
        msg = f"a row must be a list of {N_FEATURES} numbers or an object, got {_kind(row)}"
        problems.append(Problem(loc, msg, "type_error"))
        return None
    if values is None:
        return None
    found = [
        Problem((*loc, feature.name), f"{feature.name} {reason}")
        for feature, value in zip(FEATURES, values, strict=True)
        if (reason := feature.violation(value)) is not None
    ]
    problems.extend(found)
    return None if found else [math.nan if value is None else float(value) for value in values]


def _list_values(row: Any, loc: Loc, problems: list[Problem]) -> list[Any] | None:
    if not isinstance(row, list):
        problems.append(Problem(loc, f"must be a list of {N_FEATURES} numbers, got {_kind(row)}", "type_error"))
        return None
    if len(row) != N_FEATURES:
        problems.append(Problem(loc, f"must have exactly {N_FEATURES} values (contract order: "
                                     f"{', '.join(FEATURE_NAMES)}), got {len(row)}", "length_error"))  # fmt: skip
        return None
    return row


def _named_values(row: dict[str, Any], loc: Loc, problems: list[Problem]) -> list[Any] | None:
    unknown = sorted(name for name in row if name not in FEATURES_BY_NAME)
    missing = [name for name in FEATURE_NAMES if name not in row]
    problems.extend(Problem((*loc, name), f"unknown feature '{name}'", "extra_forbidden") for name in unknown)
    problems.extend(
        Problem((*loc, name), f"{name} is missing: must be {FEATURES_BY_NAME[name].rule()}", "missing")
        for name in missing
    )
    return None if unknown or missing else [row[name] for name in FEATURE_NAMES]


def _kind(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), type(value).__name__
    )
