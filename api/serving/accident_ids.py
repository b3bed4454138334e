"""The optional caller-supplied accident id of each /predict row (the BAAC `Num_Acc`).

Accepted in all three request shapes, next to what the seed already accepts:
  {"features": [...28...], "accident_id": "202100000001"}
  {"place": 10, ..., "accident_id": "202100000001"}
  {"instances": [{"features": [...], "accident_id": "202100000001"}, {"place": 10, ..., "accident_id": "..."}]}
A batch row may take any single-row shape (a bare list carries no id). A valid id is a string of
1 to 20 digits or an integer in [0, 2**53 - 1] (stored as its digits); null: none.
Anything else (too long, letters, NUL bytes, floats, booleans) is a 422 naming the row: nothing
but digits ever reaches the database.
"""

from __future__ import annotations

import re
from typing import Any

from accidents.store.prediction_log import ACCIDENT_ID_MAX_LENGTH

ID_FIELD = "accident_id"
ID_PATTERN = rf"^[0-9]{{1,{ACCIDENT_ID_MAX_LENGTH}}}$"  # for OpenAPI (where $ ends the string)
_DIGITS = re.compile(rf"[0-9]{{1,{ACCIDENT_ID_MAX_LENGTH}}}")  # fullmatch: Python's $ allows a final newline
# Integers up to 2**53 - 1: every JSON parser reads those exactly (BAAC ids have 12 digits).
MAX_INTEGER_ID = 2**53 - 1
RULE = (f"a string of 1 to {ACCIDENT_ID_MAX_LENGTH} digits (the BAAC Num_Acc) or an integer in [0, {MAX_INTEGER_ID}], "
        "or null")  # fmt: skip

Loc = tuple[str | int, ...]
IdProblem = tuple[Loc, str, str]  # location, message, type


def accident_id_value(value: Any, loc: Loc, problems: list[IdProblem]) -> str | None:
    """The id as digits, None for null; appends a problem and returns None when invalid."""
    if value is None:
        return None
    if type(value) is str:
        if _DIGITS.fullmatch(value):
            return value
        kind = "too_long" if len(value) > ACCIDENT_ID_MAX_LENGTH else "string_pattern_mismatch"
        problems.append((loc, f"{ID_FIELD} must be {RULE}, got a string of {len(value)} characters", kind))
        return None
    if type(value) is float and value.is_integer():  # JSON has one number type: 202100000001.0 is an integer
        value = int(value)
    if type(value) is int:
        if 0 <= value <= MAX_INTEGER_ID:
            return str(value)
        kind = "too_long" if value > 0 else "value_error"
        problems.append((loc, f"{ID_FIELD} must be {RULE}, got an integer out of range", kind))
        return None
    problems.append((loc, f"{ID_FIELD} must be {RULE}, got {type(value).__name__}", "type_error"))
    return None


def take_accident_ids(payload: Any, problems: list[IdProblem]) -> list[str | None] | None:
    """Remove the accident ids from a parsed /predict body (in place) and return one per row, or
    None when the request gives none. A batch row given as {"features": [...]} becomes its list."""
    if type(payload) is not dict:
        return None
    if "instances" in payload:
        return _batch_ids(payload["instances"], problems)
    if ID_FIELD not in payload:
        return None
    return [accident_id_value(payload.pop(ID_FIELD), (ID_FIELD,), problems)]


def _batch_ids(rows: Any, problems: list[IdProblem]) -> list[str | None] | None:
    if type(rows) is not list:
        return None
    ids: list[str | None] | None = None
    for index, row in enumerate(rows):
        if type(row) is not dict:
            continue
        if ID_FIELD in row:
            ids = ids if ids is not None else [None] * len(rows)
            ids[index] = accident_id_value(row.pop(ID_FIELD), ("instances", index, ID_FIELD), problems)
        if row.keys() == {"features"}:
            rows[index] = row["features"]  # the single-row shape inside a batch: its values
    return ids
