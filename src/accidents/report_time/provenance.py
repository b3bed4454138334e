"""Which request fields each report-time feature is computed from: how `?explain=true` on
/v2/predict states the model's reasons in terms of the report a caller sent.

The model sees 95 features (accidents.report_time.features), most of them aggregates over every
vehicle and user ("n_pedestrians", "heaviest_catv", "belt_share"). A caller wrote fields
("vehicles[].users[].catu", "place.vma"). Each feature here names:
- `credited`: the fields whose values it reports; its SHAP contribution is shared equally
  between them (so the fields' contributions still sum to the raw score minus the base value);
- `conditions`: fields that only select which rows it reports on (a driver's age is an age,
  `an_nais`, of the users whose `catu` says driver); they get no credit.
`tests/report_time/test_provenance.py` checks both on real accidents: changing a field changes
only features that name it, and every credited field does change its feature. (A condition can
be rarer than 65 accidents show, such as two vehicles tied on catv and choc that differ in obsm.)

Field paths: an accident field by its name ("date", "lum"), a place field as "place.<name>", a
vehicle field as "vehicles[].<name>", a user field as "vehicles[].users[].<name>"; "vehicles" and
"vehicles[].users" are the lists themselves (how many there are).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from accidents.report_time.contract import ACCIDENT_FIELDS, PLACE_FIELDS, USER_FIELDS, VEHICLE_FIELDS
from accidents.report_time.features import CHOC_GROUPS, MANV_GROUPS, REPORT_FEATURES

VEHICLES, USERS = "vehicles", "vehicles[].users"


def vehicle(name: str) -> str:
    return f"{VEHICLES}[].{name}"


def user(name: str) -> str:
    return f"{USERS}[].{name}"


@dataclass(frozen=True)
class Provenance:
    credited: tuple[str, ...]
    conditions: tuple[str, ...] = ()


def _provenance() -> dict[str, Provenance]:
    catu, catv, an_nais = user("catu"), vehicle("catv"), user("an_nais")
    equipment = tuple(user(name) for name in ("secu1", "secu2", "secu3"))
    # the lightest and heaviest vehicle: chosen by mass (from catv), ties broken by catv, choc, manv,
    # obs, obsm (features._lightest_and_heaviest): a field reported of it depends on those before it
    ranked = ("catv", "choc", "manv", "obs", "obsm")
    of = Provenance
    table = {
        "hour": of(("hrmn",)), "month": of(("date",)), "weekday": of(("date",)), "dep": of(("dep",)),
        "com": of(("com",)),
        **{field.name: of((field.name,)) for field in ACCIDENT_FIELDS},
        **{field.name: of((f"place.{field.name}",)) for field in PLACE_FIELDS},
        "vma_outside_town": of(("place.vma",), ("agg",)),
        "n_vehicles": of((VEHICLES,)), "single_vehicle": of((VEHICLES,)),
        **{f"n_{name}": of((catv,)) for name in ("two_wheelers", "cars", "buses", "heavy", "vans", "bicycles",
                                                 "motorcycles", "mopeds", "personal_transporters")},
        "n_fixed_obstacle": of((vehicle("obs"),)), "fixed_obstacle": of((vehicle("obs"),)),
        **{f"n_hit_{name}": of((vehicle("obsm"),)) for name in ("pedestrian", "vehicle", "animal", "none")},
        **{f"n_impact_{name}": of((vehicle("choc"),)) for name in CHOC_GROUPS},
        **{f"n_{name}": of((vehicle("manv"),)) for name in MANV_GROUPS},
        "n_electric": of((vehicle("motor"),)),
        **{f"{side}_{name}": of((vehicle(name),), tuple(vehicle(before) for before in ranked[:rank]))
           for side in ("lightest", "heaviest") for rank, name in enumerate(ranked)},
        "n_users": of((USERS,)),
        **{f"n_{name}": of((catu,)) for name in ("drivers", "passengers", "pedestrians")},
        "n_users_two_wheelers": of((catv,), (catu,)), "n_users_heavy": of((catv,), (catu,)),
        "n_front_passengers": of((user("place"),), (catu,)), "n_rear_passengers": of((user("place"),), (catu,)),
        **{name: of((an_nais,), ("date",)) for name in ("age_min", "age_max", "age_mean", "n_aged_75_plus",
                                                        "n_aged_under_15")},
        "driver_age_min": of((an_nais,), ("date", catu)), "driver_age_max": of((an_nais,), ("date", catu)),
        "vulnerable_age_max": of((an_nais,), ("date", catu, catv)),
        "pedestrian_age_max": of((an_nais,), ("date", catu)),
        "n_female": of((user("sexe"),)), "n_male_drivers": of((user("sexe"),), (catu,)),
        "belt_share": of(equipment, (catu, catv)), "helmet_share": of(equipment, (catu, catv)),
        "n_no_equipment": of((user("secu1"),), (catu,)),
        "n_unhelmeted_two_wheelers": of(equipment, (catu, catv)),
        "n_trip_leisure": of((user("trajet"),)), "n_trip_work": of((user("trajet"),)),
        "pedestrian_location": of((user("locp"),), (catu,)), "pedestrian_action": of((user("actp"),), (catu,)),
        "pedestrian_group": of((user("etatp"),), (catu,)),
        "pedestrian_vs_car": of((catu, catv)), "pedestrian_vs_heavy": of((catu, catv)),
        **{name: of((catv,)) for name in ("two_wheeler_vs_car", "two_wheeler_vs_heavy", "car_vs_heavy")},
    }  # fmt: skip
    return table


def request_fields() -> dict[str, str]:
    """Every field a report carries, as a path (the lists included), in the contract's order, with
    its description."""
    return {
        "date": "date of the accident", "hrmn": "time of the accident, HH:MM", "dep": "department (INSEE)",
        "com": "commune (INSEE)",
        **{field.name: field.description for field in ACCIDENT_FIELDS},
        **{f"place.{field.name}": field.description for field in PLACE_FIELDS},
        VEHICLES: "how many vehicles the report lists",
        **{vehicle(field.name): field.description for field in VEHICLE_FIELDS},
        USERS: "how many users the report lists",
        **{user(field.name): field.description for field in USER_FIELDS},
    }  # fmt: skip


class FieldCredit:
    """Feature contributions -> request-field contributions: a (features x fields) matrix whose
    rows share each feature's contribution equally between its credited fields (rows sum to 1)."""

    def __init__(self) -> None:
        self.provenance = _provenance()
        if set(self.provenance) != set(REPORT_FEATURES):
            raise AssertionError(f"provenance out of date: {sorted(set(self.provenance) ^ set(REPORT_FEATURES))}")
        self.descriptions = request_fields()
        index = {field: i for i, field in enumerate(self.fields)}
        self.matrix = np.zeros((len(REPORT_FEATURES), len(self.fields)))
        for row, name in enumerate(REPORT_FEATURES):
            credited = self.provenance[name].credited
            for field in credited:
                self.matrix[row, index[field]] += 1 / len(credited)

    @property
    def fields(self) -> tuple[str, ...]:
        return tuple(self.descriptions)

    def of(self, contributions: np.ndarray) -> np.ndarray:
        """(n, 95) feature contributions -> (n, fields) field contributions (same row sums)."""
        return contributions @ self.matrix

    def describe_feature(self, name: str) -> str:
        origin = self.provenance[name]
        text = "computed from " + ", ".join(origin.credited)
        return text + (f" (given {', '.join(origin.conditions)})" if origin.conditions else "")


@lru_cache(maxsize=1)
def field_credit() -> FieldCredit:
    """The one FieldCredit (built on first use)."""
    return FieldCredit()
