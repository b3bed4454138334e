"""Report-time features: one row per accident from every user and vehicle, no injury outcome.

One code path for training and serving: the pipeline turns the four official tables into
`Tables` (accidents.report_time.raw), a request's reports become the same `Tables`
(`tables_from_reports`), and `accident_features` computes the row from either. numpy only (no
pandas): the serving process keeps pandas out (api/serving/lean_imports.py).

Every raw code goes through its contract domain (accidents.report_time.contract) here, on both
paths: unknown (-1) and out-of-domain values become NaN, which the trees treat as missing.
Measured (min of 5, in process, shared 2-core machine): the 95 features of the 56,518 accidents
of 2021 (129,153 users, 97,315 vehicles) in 0.14 s; a request's 1,000 accidents in 2.2 ms, one
accident in 0.70 ms. Every step is a numpy pass: dates through numpy's calendar, vehicle families
and masses through lookup tables, code sets through `accidents.features.in_codes` (before, per-row
Python loops and `np.isin`: 0.37 s, 6.4 ms and 1.07 ms).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from accidents.features import CATV_GROUPS, Feature, in_codes
from accidents.report_time.contract import (
    ACCIDENT_FIELDS,
    COMMUNE,
    DEPARTMENT,
    HOUR,
    PLACE_FIELDS,
    REPORT_EXAMPLE,
    USER_FIELDS,
    VEHICLE_FIELDS,
    AccidentReport,
    insee_number,
)

Columns = dict[str, np.ndarray]
# Accident columns besides the contract's fields: the calendar and the INSEE codes as numbers.
CALENDAR = ("year", "month", "day", "hour", "dep", "com")


@dataclass(frozen=True)
class Tables:
    """The four BAAC tables as float columns (official names). `accidents` has one row per
    accident (caracteristiques and lieux joined); `vehicles["accident"]` and `users["accident"]`
    are row numbers in `accidents`, `users["vehicle"]` a row number in `vehicles`."""

    accident_ids: list[str | None]
    accidents: Columns
    vehicles: Columns
    users: Columns


def in_domain(feature: Feature, values: np.ndarray) -> np.ndarray:
    """The values with every code outside `feature`'s domain (BAAC's -1 included) as NaN."""
    values = np.asarray(values, dtype=float)
    return np.where(feature.accepts(values), values, np.nan)


def _nan(value: float | None) -> float:
    return np.nan if value is None else float(value)


def tables_from_reports(reports: Sequence[object]) -> Tables:
    """Validated `AccidentReport`s -> Tables (the same columns the raw path builds)."""
    accident_rows: list[dict[str, float]] = []
    vehicle_rows: list[dict[str, float]] = []
    user_rows: list[dict[str, float]] = []
    for index, report in enumerate(reports):
        row = {feature.name: _nan(getattr(report, feature.name)) for feature in ACCIDENT_FIELDS}
        row |= {feature.name: _nan(getattr(report.place, feature.name)) for feature in PLACE_FIELDS}
        row |= {"year": report.date.year, "month": report.date.month, "day": report.date.day,
                "hour": float(report.hrmn[:2]), "dep": _nan(insee_number(report.dep)),
                "com": _nan(insee_number(report.com))}  # fmt: skip
        accident_rows.append(row)
        for vehicle in report.vehicles:
            vehicle_index = len(vehicle_rows)
            vehicle_rows.append({"accident": index} | {f.name: _nan(getattr(vehicle, f.name)) for f in VEHICLE_FIELDS})
            for user in vehicle.users:
                user_rows.append({"accident": index, "vehicle": vehicle_index}
                                 | {f.name: _nan(getattr(user, f.name)) for f in USER_FIELDS})  # fmt: skip
    return Tables(
        accident_ids=[report.accident_id for report in reports],
        accidents=_columns(accident_rows, (*CALENDAR, *(f.name for f in (*ACCIDENT_FIELDS, *PLACE_FIELDS)))),
        vehicles=_columns(vehicle_rows, ("accident", *(f.name for f in VEHICLE_FIELDS))),
        users=_columns(user_rows, ("accident", "vehicle", *(f.name for f in USER_FIELDS))),
    )


def _columns(rows: list[dict[str, float]], names: Sequence[str]) -> Columns:
    return {name: np.array([row[name] for row in rows], dtype=float) for name in names}


# Vehicle families of the seed's grouping (CATV_GROUPS: 1 two-wheelers and personal transporters,
# 2 cars, 3 buses/trams/trains, 4 heavy goods and special, 5 vans, 6 quads/other, 0 unknown),
# ranked by mass for "lightest / heaviest vehicle"; unknown sits between quads and cars.
FAMILY_MASS = {1: 1.0, 6: 2.0, 0: 2.5, 2: 3.0, 5: 4.0, 4: 5.0, 3: 6.0}
# the same as lookup tables (index: the code): no Python loop per vehicle
FAMILY_OF_CATV = np.array([float(CATV_GROUPS.get(code, 0)) for code in range(max(CATV_GROUPS) + 1)])
MASS_OF_FAMILY = np.array([FAMILY_MASS[family] for family in range(max(FAMILY_MASS) + 1)])
TWO_WHEELER, CAR, BUS, HEAVY, VAN = 1, 2, 3, 4, 5
BICYCLES = (1, 80)  # bicycle, e-bike
MOTORCYCLES = (31, 32, 33, 34)  # 50-125 cm3 up to > 125 cm3
MOPEDS = (2, 30)
PERSONAL_TRANSPORTERS = (50, 60)
CHOC_GROUPS = {"front": (1, 2, 3), "rear": (4, 5, 6), "side": (7, 8), "multiple": (9,)}
MANV_GROUPS = {"wrong_way": (5, 6), "overtaking": (17, 18), "turning": (15, 16), "crossing": (19,),
               "stopped": (20, 23, 24), "avoiding": (21,), "changing_lane": (11, 12, 13, 14)}  # fmt: skip
SEAT_BELT, HELMET, NO_EQUIPMENT = 1, 2, 0
DRIVER, PASSENGER, PEDESTRIAN = 1, 2, 3


class _Groups:
    """Per-accident aggregates of vehicle or user rows (`segment`: each row's accident)."""

    def __init__(self, segment: np.ndarray, n: int):
        self.segment, self.n = segment.astype(np.int64), n

    def count(self, mask: np.ndarray) -> np.ndarray:
        return np.bincount(self.segment[mask], minlength=self.n).astype(float)

    def extreme(self, values: np.ndarray, mask: np.ndarray | None = None, lowest: bool = False) -> np.ndarray:
        keep = np.isfinite(values) if mask is None else np.isfinite(values) & mask
        out = np.full(self.n, np.inf if lowest else -np.inf)
        (np.minimum if lowest else np.maximum).at(out, self.segment[keep], values[keep])
        return np.where(np.isfinite(out), out, np.nan)

    def mean(self, values: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
        keep = np.isfinite(values) if mask is None else np.isfinite(values) & mask
        total = np.bincount(self.segment[keep], weights=values[keep], minlength=self.n)
        counts = np.bincount(self.segment[keep], minlength=self.n)
        return np.divide(total, counts, out=np.full(self.n, np.nan), where=counts > 0)


def _accident_columns(accidents: Columns) -> Columns:
    fields = {f.name: in_domain(f, accidents[f.name]) for f in (*ACCIDENT_FIELDS, *PLACE_FIELDS)}
    days = _days(accidents["year"], accidents["month"], accidents["day"])
    weekday = np.where(np.isfinite(days), (np.nan_to_num(days) + 3) % 7, np.nan)  # 1970-01-01: a Thursday
    outside = fields["agg"] == 1
    return {
        "hour": in_domain(HOUR, accidents["hour"]), "month": accidents["month"], "weekday": weekday,
        "dep": in_domain(DEPARTMENT, accidents["dep"]), "com": in_domain(COMMUNE, accidents["com"]),
        **fields,
        "vma_outside_town": np.where(outside, fields["vma"], 0.0),
    }  # fmt: skip


def _days(year: np.ndarray, month: np.ndarray, day: np.ndarray) -> np.ndarray:
    """Days since 1970-01-01 (NaN where the parts make no date; each part's integer part is read)."""
    year, month, day = np.trunc(year), np.trunc(month), np.trunc(day)  # NaN stays NaN
    common = (year >= 1000) & (year <= 9999)  # four-digit years: numpy's calendar, without text
    in_year = common & (month >= 1) & (month <= 12)
    first = (_whole(in_year, year - 1970).astype("datetime64[Y]").astype("datetime64[M]")
             + _whole(in_year, month - 1).astype("timedelta64[M]"))  # fmt: skip
    start, end = first.astype("datetime64[D]"), (first + np.timedelta64(1, "M")).astype("datetime64[D]")
    valid = in_year & (day >= 1) & (day <= (end - start).astype(np.int64))
    out = np.where(valid, (start + _whole(valid, day - 1).astype("timedelta64[D]")).astype(np.int64), np.nan)
    for i in np.flatnonzero(np.isfinite(year) & np.isfinite(month) & np.isfinite(day) & ~common):
        out[i] = _day_of(year[i], month[i], day[i])  # other years (none in BAAC): as numpy reads the text
    return out


def _whole(keep: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Whole `values` as int64 where `keep`, 0 elsewhere (NaN never cast)."""
    return np.where(keep, values, 0).astype(np.int64)


def _day_of(year: float, month: float, day: float) -> float:
    try:
        return float(np.datetime64(f"{int(year):04d}-{int(month):02d}-{int(day):02d}", "D").astype(np.int64))
    except ValueError:
        return np.nan


def _vehicle_columns(vehicles: Columns, groups: _Groups) -> tuple[Columns, np.ndarray]:
    """Vehicle aggregates, and each vehicle's family (for the users' aggregates)."""
    value = {f.name: in_domain(f, vehicles[f.name]) for f in VEHICLE_FIELDS}
    catv = value["catv"]
    known = np.isfinite(catv) & (catv > -1) & (catv < len(FAMILY_OF_CATV))  # CATV_GROUPS.get(int(code), 0)
    family = np.where(known, FAMILY_OF_CATV[np.where(known, catv, 0).astype(np.intp)], 0.0)
    columns: Columns = {"n_vehicles": groups.count(np.ones(len(catv), dtype=bool))}
    for name, code in (("two_wheelers", TWO_WHEELER), ("cars", CAR), ("buses", BUS), ("heavy", HEAVY), ("vans", VAN)):
        columns[f"n_{name}"] = groups.count(family == code)
    for name, codes in (("bicycles", BICYCLES), ("motorcycles", MOTORCYCLES), ("mopeds", MOPEDS),
                        ("personal_transporters", PERSONAL_TRANSPORTERS)):  # fmt: skip
        columns[f"n_{name}"] = groups.count(in_codes(catv, codes))
    columns["n_fixed_obstacle"] = groups.count(value["obs"] > 0)
    columns["fixed_obstacle"] = groups.extreme(np.where(value["obs"] > 0, value["obs"], np.nan))
    for name, codes in (("pedestrian", (1,)), ("vehicle", (2,)), ("animal", (5, 6)), ("none", (0,))):
        columns[f"n_hit_{name}"] = groups.count(in_codes(value["obsm"], codes))
    for name, codes in CHOC_GROUPS.items():
        columns[f"n_impact_{name}"] = groups.count(in_codes(value["choc"], codes))
    for name, codes in MANV_GROUPS.items():
        columns[f"n_{name}"] = groups.count(in_codes(value["manv"], codes))
    columns["n_electric"] = groups.count(in_codes(value["motor"], (2, 3)))
    columns |= _lightest_and_heaviest(value, family, groups)
    return columns, family


def _lightest_and_heaviest(value: Columns, family: np.ndarray, groups: _Groups) -> Columns:
    """The lightest and the heaviest vehicle's fields. Ties are broken by the fields themselves
    (never by list order), so any order of the same vehicles gives the same row."""
    mass = MASS_OF_FAMILY[family.astype(np.intp)]
    tie_breaks = [np.nan_to_num(value[name], nan=-1.0) for name in ("motor", "obsm", "obs", "manv", "choc", "catv")]
    order = np.lexsort((*tie_breaks, mass, groups.segment))
    segment = groups.segment[order]
    first = order[np.r_[True, segment[1:] != segment[:-1]]] if len(order) else order
    last = order[np.r_[segment[1:] != segment[:-1], True]] if len(order) else order
    columns: Columns = {}
    for side, rows in (("lightest", first), ("heaviest", last)):
        for name in ("catv", "choc", "manv", "obs", "obsm"):
            out = np.full(groups.n, np.nan)
            out[groups.segment[rows]] = value[name][rows]
            columns[f"{side}_{name}"] = out
    return columns


def _user_columns(users: Columns, family: np.ndarray, accidents: Columns, groups: _Groups) -> Columns:
    value = {f.name: in_domain(f, users[f.name]) for f in USER_FIELDS}
    catu, place = value["catu"], value["place"]
    vehicle = users["vehicle"].astype(np.int64)
    own_family = family[vehicle] if len(vehicle) else np.zeros(0)
    age = accidents["year"][groups.segment] - value["an_nais"]
    age = np.where((age >= 0) & (age <= 120), age, np.nan)
    pedestrian, driver = catu == PEDESTRIAN, catu == DRIVER
    on_two_wheels = (own_family == TWO_WHEELER) & ~pedestrian
    vulnerable = pedestrian | on_two_wheels
    in_vehicle = ~pedestrian
    equipment = np.stack([value["secu1"], value["secu2"], value["secu3"]])
    belt = (equipment == SEAT_BELT).any(axis=0).astype(float)
    helmet = (equipment == HELMET).any(axis=0).astype(float)
    return {
        "n_users": groups.count(np.ones(len(catu), dtype=bool)),
        "n_drivers": groups.count(driver),
        "n_passengers": groups.count(catu == PASSENGER),
        "n_pedestrians": groups.count(pedestrian),
        "n_users_two_wheelers": groups.count(on_two_wheels),
        "n_users_heavy": groups.count(in_codes(own_family, (HEAVY, BUS)) & in_vehicle),
        "n_front_passengers": groups.count(in_codes(place, (2, 6)) & (catu == PASSENGER)),
        "n_rear_passengers": groups.count(in_codes(place, (3, 4, 5, 7, 8, 9)) & (catu == PASSENGER)),
        "age_min": groups.extreme(age, lowest=True),
        "age_max": groups.extreme(age),
        "age_mean": groups.mean(age),
        "driver_age_min": groups.extreme(age, driver, lowest=True),
        "driver_age_max": groups.extreme(age, driver),
        "vulnerable_age_max": groups.extreme(age, vulnerable),
        "pedestrian_age_max": groups.extreme(age, pedestrian),
        "n_aged_75_plus": groups.count(age >= 75),
        "n_aged_under_15": groups.count(age < 15),
        "n_female": groups.count(value["sexe"] == 2),
        "n_male_drivers": groups.count(driver & (value["sexe"] == 1)),
        "belt_share": groups.mean(belt, in_vehicle & ~on_two_wheels),
        "helmet_share": groups.mean(helmet, on_two_wheels),
        "n_no_equipment": groups.count(in_vehicle & (value["secu1"] == NO_EQUIPMENT)),
        "n_unhelmeted_two_wheelers": groups.count(on_two_wheels & (helmet == 0)),
        "n_trip_leisure": groups.count(value["trajet"] == 5),
        "n_trip_work": groups.count(in_codes(value["trajet"], (1, 4))),
        "pedestrian_location": groups.extreme(np.where(pedestrian, value["locp"], np.nan)),
        "pedestrian_action": groups.extreme(np.where(pedestrian, value["actp"], np.nan)),
        "pedestrian_group": groups.extreme(np.where(pedestrian, value["etatp"], np.nan)),
    }


def _combinations(columns: Columns) -> Columns:
    """Who met whom: the pairs that decide how hard the weakest party is hit."""
    has = {name: columns[f"n_{name}"] > 0 for name in ("pedestrians", "two_wheelers", "cars", "heavy", "buses", "vans")}
    heavy = has["heavy"] | has["buses"]
    return {
        "single_vehicle": (columns["n_vehicles"] == 1).astype(float),
        "pedestrian_vs_car": (has["pedestrians"] & (has["cars"] | has["vans"])).astype(float),
        "pedestrian_vs_heavy": (has["pedestrians"] & heavy).astype(float),
        "two_wheeler_vs_car": (has["two_wheelers"] & (has["cars"] | has["vans"])).astype(float),
        "two_wheeler_vs_heavy": (has["two_wheelers"] & heavy).astype(float),
        "car_vs_heavy": ((has["cars"] | has["vans"]) & heavy).astype(float),
    }


def feature_columns(tables: Tables) -> Columns:
    """Every report-time feature of every accident, by name, in REPORT_FEATURES order."""
    n = len(tables.accident_ids)
    columns = _accident_columns(tables.accidents)
    vehicle_columns, family = _vehicle_columns(tables.vehicles, _Groups(tables.vehicles["accident"], n))
    columns |= vehicle_columns
    columns |= _user_columns(tables.users, family, tables.accidents, _Groups(tables.users["accident"], n))
    columns |= _combinations(columns)
    return columns


REPORT_FEATURES: tuple[str, ...] = (
    "hour", "month", "weekday", "dep", "com",
    *(f.name for f in (*ACCIDENT_FIELDS, *PLACE_FIELDS)), "vma_outside_town",
    "n_vehicles", "n_two_wheelers", "n_cars", "n_buses", "n_heavy", "n_vans", "n_bicycles", "n_motorcycles",
    "n_mopeds", "n_personal_transporters", "n_fixed_obstacle", "fixed_obstacle", "n_hit_pedestrian",
    "n_hit_vehicle", "n_hit_animal", "n_hit_none", *(f"n_impact_{name}" for name in CHOC_GROUPS),
    *(f"n_{name}" for name in MANV_GROUPS), "n_electric",
    *(f"{side}_{name}" for side in ("lightest", "heaviest") for name in ("catv", "choc", "manv", "obs", "obsm")),
    "n_users", "n_drivers", "n_passengers", "n_pedestrians", "n_users_two_wheelers", "n_users_heavy",
    "n_front_passengers", "n_rear_passengers", "age_min", "age_max", "age_mean", "driver_age_min", "driver_age_max",
    "vulnerable_age_max", "pedestrian_age_max", "n_aged_75_plus", "n_aged_under_15", "n_female", "n_male_drivers",
    "belt_share", "helmet_share", "n_no_equipment", "n_unhelmeted_two_wheelers", "n_trip_leisure", "n_trip_work",
    "pedestrian_location", "pedestrian_action", "pedestrian_group",
    "single_vehicle", "pedestrian_vs_car", "pedestrian_vs_heavy", "two_wheeler_vs_car", "two_wheeler_vs_heavy",
    "car_vs_heavy",
)  # fmt: skip

# The features that are codes (a category each value, order meaningless): the drift job compares
# them as categories (Jensen-Shannon), every other feature as a number (Wasserstein: counts, ages,
# shares, speeds, coordinates, 0/1 flags). `dep` is a department number (~100 values) like the
# seed's (accidents.monitoring.drift.CODED_RANGES); `com`, ~35,000 codes, is a code too.
REPORT_CODES: frozenset[str] = frozenset({
    "hour", "weekday", "dep", "com", *(f.name for f in (*ACCIDENT_FIELDS, *PLACE_FIELDS) if f.codes),
    *(f"{side}_{name}" for side in ("lightest", "heaviest") for name in ("catv", "choc", "manv", "obs", "obsm")),
    "fixed_obstacle", "pedestrian_location", "pedestrian_action", "pedestrian_group",
})  # fmt: skip


def accident_features(tables: Tables) -> np.ndarray:
    """One float row per accident (REPORT_FEATURES order): what the report-time model takes."""
    columns = feature_columns(tables)
    if set(columns) != set(REPORT_FEATURES):
        raise AssertionError(f"feature list out of date: {sorted(set(columns) ^ set(REPORT_FEATURES))}")
    return np.column_stack([columns[name] for name in REPORT_FEATURES]) if tables.accident_ids else np.zeros(
        (0, len(REPORT_FEATURES)))  # fmt: skip


def example_row() -> list[float]:
    """The features of contract.REPORT_EXAMPLE: the row a report-time model must score before it
    is stored or loaded (model_store.check_model), as the seed model scores SEED_EXAMPLE. Here,
    numpy only, so the API checks the models it loads without pandas."""
    tables = tables_from_reports([AccidentReport.model_validate(REPORT_EXAMPLE)])
    return [float(value) for value in accident_features(tables)[0]]
