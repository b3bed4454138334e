"""Report bodies (parsed JSON) -> `Tables` in a few list and numpy passes: /v2/predict's batches.

The contract's pydantic models (accidents.report_time.contract) check each value with a Python
validator and build an object per accident, place, vehicle and user; `tables_from_reports` then
reads every field back. Measured on 1,000 real 2021 accidents (1,700 vehicles, 2,350 users), in
process on the shared 2-core machine (min of 40): 52 ms to validate, 18 ms more for the Tables.
Here, from the same parsed JSON to the same Tables: 7 to 8 ms (one C pass per kind of object for
its fields, one per column for the types, a numpy check per column for the domains; each distinct
date, time and INSEE code read once).

It only says yes or no, like /predict's vectorized check (api.serving.prediction): a body it does
not take exactly as it is (any problem, or a valid but unusual form it does not handle) gives None,
and the caller validates it with the contract, which names every problem. So the errors are the
contract's, and for every body taken here the Tables equal `tables_from_reports` of the validated
models, bit for bit (tests/report_time/test_bodies.py: every real 2021 accident, and mutations).
The rules are the contract's own: its models' field names and required fields, each field's
`Feature` domain (`Feature.accepts`, the vectorized twin of the validators' `violation`), its
patterns and INSEE check.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from itertools import chain
from operator import itemgetter
from typing import Any, TypeVar

import numpy as np
from pydantic import BaseModel

from accidents.features import Feature
from accidents.report_time.contract import (
    ACCIDENT_FIELDS,
    ACCIDENT_ID_PATTERN,
    ACTP,
    ACTP_LETTERS,
    COMMUNE,
    COMMUNE_CODE,
    DATE_CODE,
    DEPARTMENT,
    DEPARTMENT_CODE,
    HRMN,
    PLACE_FIELDS,
    USER_FIELDS,
    VEHICLE_FIELDS,
    AccidentReport,
    PlaceReport,
    UserReport,
    VehicleReport,
    insee_code,
)
from accidents.report_time.features import Tables

T = TypeVar("T")
NUMBERS = frozenset({int, float})  # strict: no bool, no "3"
NULLABLE_NUMBERS = frozenset({int, float, type(None)})
TEXT = frozenset({str})
OPTIONAL_TEXT = frozenset({str, type(None)})
DICT, LIST = frozenset({dict}), frozenset({list})
ACCIDENT_ID = re.compile(ACCIDENT_ID_PATTERN)  # fullmatch: `$` ends the text, as in pydantic's Rust regex


class _Kind:
    """One kind of report object (accident, place, vehicle, user): the fields its model accepts
    (extra ones are refused), those it requires, and the defaults of the others."""

    def __init__(self, model: type[BaseModel]):
        fields = model.model_fields
        self.names, self.keys = tuple(fields), frozenset(fields)
        self.required = frozenset(name for name, field in fields.items() if field.is_required())
        # a field left out: the model's default (None, or no users)
        self.defaults = tuple(None if field.is_required() else field.get_default(call_default_factory=True)
                              for field in fields.values())  # fmt: skip
        self.every = itemgetter(*self.names)

    def columns(self, objects: list[Any]) -> dict[str, tuple[Any, ...]] | None:
        """Each field's values, one per object (a field left out: its default); None when one is
        not an object, has a field its model refuses or lacks one it requires."""
        if not DICT.issuperset(map(type, objects)):
            return None
        if list(map(len, objects)).count(len(self.names)) == len(objects):  # every field given (the common case)
            try:  # as many fields as ours and each of ours: exactly ours; one C pass
                rows = list(map(self.every, objects))
            except KeyError:  # an unknown field in place of one of ours
                return None
        else:
            rows = []
            for each in objects:
                if not (each.keys() <= self.keys and self.required <= each.keys()):
                    return None
                rows.append(tuple(map(each.get, self.names, self.defaults)))
        return dict(zip(self.names, zip(*rows, strict=True) if rows else [()] * len(self.names), strict=True))


ACCIDENT, PLACE = _Kind(AccidentReport), _Kind(PlaceReport)
VEHICLE, USER = _Kind(VehicleReport), _Kind(UserReport)


def _date(text: str) -> tuple[float, float, float] | None:
    return (float(text[:4]), float(text[5:7]), float(text[8:10])) if DATE_CODE.fullmatch(text) else None


def _hour(text: str) -> float | None:
    return float(text[:2]) if HRMN.fullmatch(text) else None


def _department(text: str) -> int | None:
    return insee_code(DEPARTMENT_CODE, DEPARTMENT, text)


def _commune(text: str) -> int | None:
    return insee_code(COMMUNE_CODE, COMMUNE, text)


class _Texts:
    """A text field's reading (`parse`: its value, None when the contract refuses the text), each
    valid text remembered: dates, hours and INSEE codes repeat from request to request. Only valid
    texts are kept, at most KEPT (memory stays bounded whatever callers send)."""

    KEPT = 4096

    def __init__(self, parse: Callable[[str], T | None]):
        self.parse = parse
        self.known: dict[str, Any] = {}

    def read(self, values: list[Any]) -> list[Any] | None:
        """Each text's value; None when one is not a string or not valid."""
        if not TEXT.issuperset(map(type, values)):
            return None
        known, extra = self.known, {}
        for text in set(values).difference(known):
            value = self.parse(text)
            if value is None:
                return None
            if len(known) < self.KEPT:
                known[text] = value
            else:  # full: this request's own
                extra[text] = value
        return list(map((known | extra if extra else known).__getitem__, values))


DATES, HOURS, DEPARTMENTS, COMMUNES = _Texts(_date), _Texts(_hour), _Texts(_department), _Texts(_commune)


def _numbers(given: dict[str, tuple[Any, ...]], fields: tuple[Feature, ...]) -> dict[str, np.ndarray] | None:
    """The fields' columns (floats, null: NaN) when every value is in its field's domain, else None."""
    columns = {}
    for feature in fields:
        values = given[feature.name]
        kinds = set(map(type, values))
        if str in kinds and feature is ACTP:  # the official letters, as the contract reads them
            values = [ACTP_LETTERS.get(code, code) if type(code) is str else code for code in values]
            kinds = set(map(type, values))
        if not (NULLABLE_NUMBERS if feature.nullable else NUMBERS).issuperset(kinds):  # strict: no bool, no "3"
            return None
        nulls = values.count(None)
        try:  # None -> NaN; without any, fromiter is twice as fast
            column = np.fromiter(values, float, len(values)) if not nulls else np.array(values, dtype=float)
        except (OverflowError, ValueError, TypeError):  # an integer too big for a float
            return None
        valid = feature.accepts(column)
        if nulls or feature.nullable:
            missing = np.isnan(column)
            if int(missing.sum()) != nulls:  # a NaN that is not a null (JSON has none)
                return None
            valid |= missing
        if not valid.all():
            return None
        # an integer field holds integers (2.0 is read as 2): -0.0 as 0.0, as the contract's int gives it
        columns[feature.name] = column + 0.0 if feature.integer else column
    return columns


def tables_from_bodies(accidents: list[Any]) -> Tables | None:
    """The Tables of report bodies (orjson's dicts) when the contract accepts each as it is; None
    otherwise: validate them with `AccidentReport` then (its errors, or its reading)."""
    accident = ACCIDENT.columns(accidents)
    if not accidents or accident is None:  # a batch holds one accident at least
        return None
    place = PLACE.columns(accident["place"])
    listed = accident["vehicles"]
    if place is None or not LIST.issuperset(map(type, listed)) or not all(listed):  # one vehicle at least
        return None
    vehicle = VEHICLE.columns(list(chain.from_iterable(listed)))
    if vehicle is None or not LIST.issuperset(map(type, vehicle["users"])):
        return None
    user = USER.columns(list(chain.from_iterable(vehicle["users"])))
    if user is None:
        return None

    accident_ids = list(accident["accident_id"])
    if not OPTIONAL_TEXT.issuperset(map(type, accident_ids)) or not all(
        ACCIDENT_ID.fullmatch(text) for text in set(accident_ids) if text is not None
    ):
        return None
    dates, hours = DATES.read(accident["date"]), HOURS.read(accident["hrmn"])
    departments, communes = DEPARTMENTS.read(accident["dep"]), COMMUNES.read(accident["com"])
    accident_columns = _numbers(accident, ACCIDENT_FIELDS)
    place_columns = _numbers(place, PLACE_FIELDS)
    vehicle_columns = _numbers(vehicle, VEHICLE_FIELDS)
    user_columns = _numbers(user, USER_FIELDS)
    if (dates is None or hours is None or departments is None or communes is None or accident_columns is None
            or place_columns is None or vehicle_columns is None or user_columns is None):  # fmt: skip
        return None
    year, month, day = (np.array(part, dtype=float) for part in zip(*dates, strict=True))
    calendar = {"year": year, "month": month, "day": day, "hour": np.array(hours, dtype=float),
                "dep": np.array(departments, dtype=float), "com": np.array(communes, dtype=float)}  # fmt: skip
    # each vehicle's accident, each user's vehicle and accident: row numbers, as tables_from_reports gives them
    vehicle_accident = np.repeat(np.arange(len(accidents), dtype=float), list(map(len, listed)))
    users_per_vehicle = list(map(len, vehicle["users"]))
    return Tables(
        accident_ids=accident_ids,
        accidents=calendar | accident_columns | place_columns,
        vehicles={"accident": vehicle_accident} | vehicle_columns,
        users={"accident": np.repeat(vehicle_accident, users_per_vehicle),
               "vehicle": np.repeat(np.arange(len(vehicle_accident), dtype=float), users_per_vehicle)} | user_columns,
    )  # fmt: skip
