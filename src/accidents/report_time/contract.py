"""The report contract: one accident as BAAC records it when it is reported, minus every outcome.

The seed's 28-feature contract describes the most severely injured user, a row chosen with the
target (issue #25). A report carries what exists when the accident is reported: the accident
(date, time, place, lighting, weather, collision type), its place (road, lanes, surface, speed
limit...), every vehicle (category, obstacles, impact point, manoeuvre, engine) and, inside
each vehicle, every user (category, seat, sex, year of birth, safety equipment, trip,
pedestrian fields). BAAC attaches a pedestrian to the vehicle that hit them; so does a report.

Each code is checked against its official domain (BAAC description, 2022 edition), defined once
as an `accidents.features.Feature`: a field the seed contract already has reuses the seed's
definition (made nullable where BAAC records "unknown"), the others are defined here. Unknown
values are null (BAAC's -1): the raw-table path (accidents.report_time.raw) turns -1 and every
out-of-domain code into the same missing value. Injury severity (`grav`) is the outcome the model
predicts: a report carrying it is refused, and the error says why.
"""

from __future__ import annotations

import calendar
import dataclasses
import re
from collections.abc import Callable
from datetime import date
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, create_model, model_validator

from accidents.features import ATM_GROUPS, CATV_GROUPS, FEATURES_BY_NAME, Feature
from accidents.store.prediction_log import ACCIDENT_ID_MAX_LENGTH


def _seed(name: str, official: str | None = None, nullable: bool = True) -> Feature:
    """The seed contract's definition of a raw field, under its official name."""
    feature = FEATURES_BY_NAME[name]
    return dataclasses.replace(feature, name=official or name, nullable=nullable or feature.nullable)


def _coded(name: str, description: str, codes: range | tuple[int, ...], nullable: bool = True) -> Feature:
    return Feature(name, description, codes=frozenset(codes), nullable=nullable)


# The accident (caracteristiques). `date`, `hrmn`, `dep` and `com` are checked by the model below
# (a date, "HH:MM", INSEE codes as strings) and then as numbers by their seed domains.
ACCIDENT_FIELDS: tuple[Feature, ...] = (
    _seed("lum", nullable=False),
    _seed("agg_", "agg", nullable=False),
    _seed("int", nullable=False),
    _coded("atm", "weather (1 normal, 2 light rain, 3 heavy rain, 4 snow/hail, 5 fog, 6 strong wind, "
           "7 glare, 8 overcast, 9 other)", ATM_GROUPS),
    _seed("col"),
    _seed("lat"),
    _seed("long"),
)  # fmt: skip
HOUR, YEAR = FEATURES_BY_NAME["hour"], FEATURES_BY_NAME["year_acc"]
DEPARTMENT, COMMUNE = FEATURES_BY_NAME["dep"], FEATURES_BY_NAME["com"]

# The place (lieux): the road where the accident happened.
PLACE_FIELDS: tuple[Feature, ...] = (
    _seed("catr", nullable=False),
    _seed("circ"),
    Feature("nbv", "number of traffic lanes", minimum=0, maximum=20, nullable=True),
    _coded("vosp", "reserved lane (0 none, 1 cycle path, 2 cycle lane, 3 bus lane)", range(0, 4)),
    _coded("prof", "profile (1 flat, 2 slope, 3 hilltop, 4 hill bottom)", range(1, 5)),
    _coded("plan", "layout (1 straight, 2 left curve, 3 right curve, 4 S-bend)", range(1, 5)),
    _seed("surf"),
    _coded("infra", "infrastructure (0 none, 1 tunnel, 2 bridge, 3 interchange, 4 railway, 5 crossroads "
           "layout, 6 pedestrian zone, 7 toll, 8 building site, 9 other)", range(0, 10)),
    _seed("situ"),
    _seed("vma"),
)  # fmt: skip

# The vehicles (vehicules).
VEHICLE_FIELDS: tuple[Feature, ...] = (
    _coded("senc", "direction (0 unknown, 1 increasing address, 2 decreasing, 3 none)", range(0, 4)),
    _coded("catv", "vehicle category (official code: 1 bicycle, 7 car, 10 van, 13-17 heavy goods, 30-34 "
           "two-wheelers, 37/38 bus/coach, 50/60 personal transporters, 80 e-bike...)", CATV_GROUPS, nullable=False),
    _coded("obs", "fixed obstacle hit (0 none, 1 parked vehicle .. 16 off road without obstacle)", range(0, 17)),
    _seed("obsm"),
    _coded("choc", "initial impact point (0 none, 1 front .. 8 left side, 9 multiple)", range(0, 10)),
    _coded("manv", "main manoeuvre before the accident (0 unknown, 1 no change .. 26 other)", range(0, 27)),
    _seed("motor"),
)  # fmt: skip

# The users (usagers), each inside the vehicle BAAC attaches them to. `actp` takes the official
# codes 0-9, "A" (getting on/off) and "B" (unknown): as numbers A = 10, B = 11 (ACTP_LETTERS).
ACTP_LETTERS = {"A": 10, "B": 11}
ACTP = _coded(
    "actp",
    "pedestrian action (0 none, 1 same direction .. 9 other, 10 = 'A' getting on/off, 11 = 'B' unknown)",
    range(0, 12),
)
USER_FIELDS: tuple[Feature, ...] = (
    _seed("place"),
    _seed("catu", nullable=False),
    _seed("sexe"),
    Feature("an_nais", "year of birth", minimum=1880, maximum=2100, nullable=True),
    _coded("trajet", "trip purpose (0 unknown, 1 home-work, 2 home-school, 3 shopping, 4 professional, "
           "5 leisure, 9 other)", (0, 1, 2, 3, 4, 5, 9)),
    _seed("secu1"),
    _seed("secu1", "secu2"),
    _seed("secu1", "secu3"),
    _coded("locp", "pedestrian location (0 none, 1-2 on the road away from/near a crossing .. 9 other)",
           range(0, 10)),
    ACTP,
    _coded("etatp", "pedestrian alone or not (1 alone, 2 accompanied, 3 in a group)", range(1, 4)),
)  # fmt: skip

TABLE_FIELDS: dict[str, tuple[Feature, ...]] = {
    "accident": ACCIDENT_FIELDS, "place": PLACE_FIELDS, "vehicle": VEHICLE_FIELDS, "user": USER_FIELDS,
}  # fmt: skip

# Outcomes: what the model predicts, never an input. BAAC's four tables hold one, `grav`.
OUTCOME_FIELDS: dict[str, str] = {
    "grav": "injury severity (grav) is the outcome the model predicts: a report describes the accident "
    "before anyone knows who was hurt, so it must not carry it",
    "severity": "severity is the outcome the model predicts: a report must not carry it",
}

HRMN = re.compile(r"([01][0-9]|2[0-3]):[0-5][0-9]")
DEPARTMENT_CODE = re.compile(r"0[1-9]|[1-8][0-9]|9[0-5]|2[AB]|97[1-8]|98[0-9]")
# A commune's INSEE code is its department's and a number in it (3 digits; 2 overseas): every
# code of the 2020 and 2021 tables has that form, and "00000" (no department) has not.
COMMUNE_CODE = re.compile(r"(?:0[1-9]|[1-8][0-9]|9[0-5]|2[AB])[0-9]{3}|97[1-8][0-9]{2}|98[0-9]{3}")


def _date_code(first: int, last: int) -> re.Pattern[str]:
    """Calendar dates YYYY-MM-DD of the years first..last, 29 February in leap years only."""
    years = "|".join(str(year) for year in range(first, last + 1))
    leap = "|".join(str(year) for year in range(first, last + 1) if calendar.isleap(year))
    days = ("(?:0[13578]|1[02])-(?:0[1-9]|[12][0-9]|3[01])|(?:0[469]|11)-(?:0[1-9]|[12][0-9]|30)"
            "|02-(?:0[1-9]|1[0-9]|2[0-8])")  # fmt: skip
    return re.compile(f"(?:{years})-(?:{days})|(?:{leap})-02-29")


def insee_number(code: str) -> int | None:
    """An INSEE department or commune code as the seed's number: Corsica's 2A/2B -> 201/202."""
    text = code.strip().upper()
    text = "201" + text[2:] if text.startswith("2A") else "202" + text[2:] if text.startswith("2B") else text
    return int(text) if text.isdigit() else None


def actp_number(code: str | int | None) -> int | None:
    """The pedestrian action code as a number ("A" -> 10, "B" -> 11); None for anything else."""
    if isinstance(code, int) and not isinstance(code, bool):
        return code
    text = str(code).strip().upper() if code is not None else ""
    return ACTP_LETTERS.get(text, int(text) if text.isdigit() else None)


def _documented_as(schema: dict[str, Any]) -> Callable[[dict[str, Any]], None]:
    """A field's JSON schema replaced by `schema`: the exact rule its validator applies, so the
    OpenAPI document (and a fuzzer generating from it) knows what is accepted."""

    def replace(generated: dict[str, Any]) -> None:
        generated.clear()
        generated.update(schema)

    return replace


def _anchored(pattern: re.Pattern[str]) -> str:
    return f"^(?:{pattern.pattern})$"


def _whole(value: Any) -> Any:
    """A whole-number float (2076.0) as the integer it is: JSON Schema's `integer` and the seed's
    contract accept it; strings, booleans and fractions stay refused by the strict type."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _checked(feature: Feature) -> Any:
    def check(value: Any) -> Any:
        if (reason := feature.violation(value)) is not None:
            raise ValueError(f"{feature.name} {reason}")
        return value

    kind = Annotated[int, BeforeValidator(_whole)] if feature.integer else float
    return (
        Annotated[kind | None, AfterValidator(check)],
        Field(None if feature.nullable else ..., json_schema_extra=_documented_as(feature.json_schema())),
    )


class _Report(BaseModel):
    """Strict codes (no "3" for 3), unknown fields refused, outcomes refused with the reason."""

    model_config = ConfigDict(extra="forbid", strict=True)

    @model_validator(mode="before")
    @classmethod
    def _no_outcome(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for name in sorted(set(data) & set(OUTCOME_FIELDS)):
                raise ValueError(OUTCOME_FIELDS[name])
        return data


def _model(name: str, fields: tuple[Feature, ...], **extra: Any) -> type[BaseModel]:
    definitions = {feature.name: _checked(feature) for feature in fields}
    if "actp" in definitions:  # official letters accepted as well
        schema = ACTP.json_schema()
        schema.pop("type")
        schema["enum"] = [*sorted(ACTP.codes or ()), *ACTP_LETTERS, None]
        definitions["actp"] = (
            Annotated[int | str | None, BeforeValidator(_whole), AfterValidator(_actp)],
            Field(None, json_schema_extra=_documented_as(schema)),
        )
    return create_model(name, __base__=_Report, **definitions, **extra)


def _actp(value: int | str | None) -> int | None:
    """Official letters as their numbers; a number must be a code (a string of digits is refused
    like everywhere else in the contract)."""
    number = ACTP_LETTERS.get(value) if isinstance(value, str) else value
    if value is not None and (number is None or ACTP.violation(number) is not None):
        raise ValueError(f"actp must be one of 0..9, 'A', 'B' or null, got {value!r}")
    return number


UserReport = _model("UserReport", USER_FIELDS)
VehicleReport = _model(
    "VehicleReport", VEHICLE_FIELDS,
    users=(list[UserReport],
           Field(default_factory=list, description="the vehicle's users, pedestrians it hit included")),
)  # fmt: skip
PlaceReport = _model("PlaceReport", PLACE_FIELDS)


# pydantic's pattern (Rust regex: `$` ends the text); Python's `fullmatch` applies it the same way.
ACCIDENT_ID_PATTERN = rf"^[0-9]{{1,{ACCIDENT_ID_MAX_LENGTH}}}$"
DATE_CODE = _date_code(int(YEAR.minimum or 0), int(YEAR.maximum or 0))
DATE_RULE = f"a calendar date YYYY-MM-DD in {YEAR.minimum:.0f}..{YEAR.maximum:.0f}"


def _date(value: Any) -> Any:
    """Only the exact text (pydantic's lax date parsing also takes timestamps and date-times)."""
    if not (isinstance(value, str) and DATE_CODE.fullmatch(value)):
        raise ValueError(f"date must be {DATE_RULE}, got {value!r}")
    return value


def _hrmn(value: str) -> str:
    if not HRMN.fullmatch(value):
        raise ValueError(f"hrmn must be a time HH:MM (00:00 .. 23:59), got {value!r}")
    return value


def insee_code(pattern: re.Pattern[str], feature: Feature, value: str) -> int | None:
    """The number of a valid INSEE code (`pattern`, then `feature`'s domain), None otherwise."""
    number = insee_number(value) if pattern.fullmatch(value) else None
    return number if number is not None and feature.violation(number) is None else None


def _insee(pattern: re.Pattern[str], feature: Feature, what: str) -> Any:
    def check(value: str) -> str:
        if insee_code(pattern, feature, value) is None:
            raise ValueError(f"{what} must be an INSEE code ({pattern.pattern}), got {value!r}")
        return value

    return AfterValidator(check)


AccidentReport = _model(
    "AccidentReport", ACCIDENT_FIELDS,
    accident_id=(str | None, Field(None, pattern=ACCIDENT_ID_PATTERN,
                                   description="optional BAAC Num_Acc, digits")),
    date=(Annotated[date, Field(strict=False), BeforeValidator(_date)],
          Field(json_schema_extra=_documented_as({"type": "string", "pattern": _anchored(DATE_CODE),
                                                  "description": f"date of the accident: {DATE_RULE}"}))),
    hrmn=(Annotated[str, AfterValidator(_hrmn)],
          Field(json_schema_extra={"pattern": _anchored(HRMN), "description": "time of the accident, HH:MM"})),
    dep=(Annotated[str, _insee(DEPARTMENT_CODE, DEPARTMENT, "dep")],
         Field(json_schema_extra={"pattern": _anchored(DEPARTMENT_CODE),
                                  "description": "department (INSEE, e.g. 75, 2A, 971)"})),
    com=(Annotated[str, _insee(COMMUNE_CODE, COMMUNE, "com")],
         Field(json_schema_extra={"pattern": _anchored(COMMUNE_CODE),
                                  "description": "commune (INSEE: its department's code, then 3 digits "
                                                 "(2 overseas), e.g. 75056, 2A004, 97411)"})),
    place=(PlaceReport, Field(description="the road where the accident happened (lieux)")),
    vehicles=(list[VehicleReport], Field(min_length=1, description="every vehicle involved, with its users")),
)  # fmt: skip


class ReportBatch(_Report):
    """Several accidents in one request."""

    accidents: list[AccidentReport] = Field(min_length=1)  # type: ignore[valid-type]


# One real 2021 accident (Num_Acc 202100000002, two cars, one driver each) as a report: the
# example row every report-time model is checked on before it is stored or served
# (accidents.report_time.features.example_row), and a request a reader can copy.
REPORT_EXAMPLE: dict[str, Any] = {
    "accident_id": "202100000002", "date": "2021-09-25", "hrmn": "14:20", "dep": "51", "com": "51544",
    "lum": 1, "agg": 1, "int": 3, "atm": 1, "col": 3, "lat": 49.242129, "long": 4.554546,
    "place": {"catr": 3, "circ": 2, "nbv": 2, "vosp": 0, "prof": 1, "plan": 1, "surf": 1, "infra": 0, "situ": 1,
              "vma": 80},
    "vehicles": [
        {"senc": 0, "catv": 7, "obs": 2, "obsm": 2, "choc": 1, "manv": 1, "motor": None,
         "users": [{"place": 1, "catu": 1, "sexe": 1, "an_nais": 1983, "trajet": 0, "secu1": 1, "secu2": None,
                    "secu3": None, "locp": 0, "actp": 0, "etatp": None}]},
        {"senc": 0, "catv": 7, "obs": 0, "obsm": 2, "choc": 1, "manv": 9, "motor": None,
         "users": [{"place": 1, "catu": 1, "sexe": 1, "an_nais": 1993, "trajet": 0, "secu1": 1, "secu2": None,
                    "secu3": None, "locp": 0, "actp": 0, "etatp": None}]},
    ],
}  # fmt: skip
