"""The optional caller-supplied accident id of each /predict row (the BAAC `Num_Acc`).

Accepted in all three request shapes, next to what the seed already accepts:
  {"features": [...28...], "accident_id": "202100000001"}
  {"place": 10, ..., "accident_id": "202100000001"}
  {"instances": [[...], {...}], "accident_ids": ["202100000001", null]}     (or "accident_id" in a named row)
A valid id is a string of 1 to 20 digits or a non-negative integer of at most 20 digits (stored as
its digits); null means none. Anything else (too long, letters, NUL bytes, floats, booleans) is a
422 naming the row: nothing but digits ever reaches the database.
"""

from __future__ import annotations

import re
from typing import Any

from accidents.prediction_log import ACCIDENT_ID_MAX_LENGTH

ID_FIELD = "accident_id"
BATCH_IDS_FIELD = "accident_ids"
ID_PATTERN = rf"^[0-9]{{1,{ACCIDENT_ID_MAX_LENGTH}}}$"
_DIGITS = re.compile(ID_PATTERN)
RULE = f"a string of 1 to {ACCIDENT_ID_MAX_LENGTH} digits (the BAAC Num_Acc) or a non-negative integer, or null"

Loc = tuple[str | int, ...]
IdProblem = tuple[Loc, str, str]  # location, message, type


def accident_id_value(value: Any, loc: Loc, problems: list[IdProblem]) -> str | None:
    """The id as digits, None for null; appends a problem and returns None when invalid."""
    if value is None:
        return None
    if type(value) is str:
        if _DIGITS.match(value) and value.isascii():
            return value
        kind = "too_long" if len(value) > ACCIDENT_ID_MAX_LENGTH else "string_pattern_mismatch"
        problems.append((loc, f"{ID_FIELD} must be {RULE}, got a string of {len(value)} characters", kind))
        return None
    if type(value) is int:
        if 0 <= value < 10**ACCIDENT_ID_MAX_LENGTH:
            return str(value)
        problems.append((loc, f"{ID_FIELD} must be {RULE}, got an integer out of range", "too_long"))
        return None
    problems.append((loc, f"{ID_FIELD} must be {RULE}, got {type(value).__name__}", "type_error"))
    return None


def take_accident_ids(payload: Any, problems: list[IdProblem]) -> list[str | None] | None:
    """Remove the accident id fields from a parsed /predict body (in place) and return one id per
    row (None when the request gives none at all). Row count mismatches are checked by the caller,
    which knows the rows."""
    if type(payload) is not dict:
        return None
    if "instances" in payload:
        return _batch_ids(payload, problems)
    if ID_FIELD not in payload:
        return None
    return [accident_id_value(payload.pop(ID_FIELD), (ID_FIELD,), problems)]


def _batch_ids(payload: dict[str, Any], problems: list[IdProblem]) -> list[str | None] | None:
    rows = payload["instances"]
    listed = payload.pop(BATCH_IDS_FIELD, None)
    ids: list[str | None] | None = None
    if listed is not None:
        if type(listed) is not list or type(rows) is not list or len(listed) != len(rows):
            count = len(rows) if type(rows) is list else "?"
            problems.append(((BATCH_IDS_FIELD,), f"{BATCH_IDS_FIELD} must be a list with one id (or null) per row "
                                                   f"of instances ({count})", "type_error"))  # fmt: skip
            return None
        ids = [accident_id_value(value, (BATCH_IDS_FIELD, index), problems) for index, value in enumerate(listed)]
    if type(rows) is not list:
        return ids
    for index, row in enumerate(rows):
        if type(row) is dict and ID_FIELD in row:
            value = accident_id_value(row.pop(ID_FIELD), ("instances", index, ID_FIELD), problems)
            if listed is not None:
                problems.append((("instances", index, ID_FIELD), f"give the ids either in {BATCH_IDS_FIELD} or in "
                                                                  "the rows, not both", "value_error"))  # fmt: skip
                continue
            ids = ids if ids is not None else [None] * len(rows)
            ids[index] = value
    return ids
