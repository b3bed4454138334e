"""The official yearly tables -> report-time `Tables`, and each accident's outcome (the target).

Parsing reuses the seed pipeline's readers (accidents.data.official: quoting, " -1",
decimal commas, "HH:MM" hours, no-break spaces in vehicle ids); codes stay raw here and are
checked against their domains in accidents.report_time.features, as a request's are. A user whose
vehicle is not in the vehicle table is left out (a report nests users in vehicles; 2020 + 2021:
none). The target is the seed's: 1 when any user was killed or hospitalised.
Measured for 2021: 2.0 s to read the four files, 4.5 s to build the Tables.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import ValidationError

from accidents.data.official import (
    SEVERE_CODES,
    SEVERITY_RANK,
    numeric,
    parse_coordinate,
    parse_hour,
    read_official_table,
)
from accidents.data.sources import TABLES
from accidents.features import Feature
from accidents.report_time.contract import (
    ACCIDENT_FIELDS,
    ACTP_LETTERS,
    PLACE_FIELDS,
    USER_FIELDS,
    VEHICLE_FIELDS,
    AccidentReport,
    actp_number,
    insee_number,
)
from accidents.report_time.features import Tables

VEHICLE_KEY = ["Num_Acc", "id_vehicule"]


def read_year(found: dict[str, Path]) -> dict[str, pd.DataFrame]:
    """The four official tables of one year (paths by table name) as trimmed strings."""
    return {table: read_official_table(found[table]) for table in TABLES}


def _numbers(frame: pd.DataFrame, names: list[str]) -> dict[str, np.ndarray]:
    return {name: numeric(frame[name]).to_numpy(dtype=float) for name in names}


def tables_from_official(frames: dict[str, pd.DataFrame]) -> Tables:
    """One year's (or several concatenated years') official tables -> Tables."""
    caract = frames["caracteristiques"].drop_duplicates("Num_Acc", keep="first").reset_index(drop=True)
    places = frames["lieux"].drop_duplicates("Num_Acc", keep="first")
    accidents = caract.merge(places, on="Num_Acc", how="left", suffixes=("", "_lieux"))
    row_of = pd.Series(np.arange(len(accidents)), index=accidents["Num_Acc"])

    accident_columns = _numbers(accidents, [f.name for f in (*ACCIDENT_FIELDS, *PLACE_FIELDS) if f.name not in
                                            ("lat", "long")])  # fmt: skip
    accident_columns |= {
        "lat": parse_coordinate(accidents["lat"], 90).to_numpy(dtype=float),
        "long": parse_coordinate(accidents["long"], 180).to_numpy(dtype=float),
        "year": numeric(accidents["an"]).to_numpy(dtype=float),
        "month": numeric(accidents["mois"]).to_numpy(dtype=float),
        "day": numeric(accidents["jour"]).to_numpy(dtype=float),
        "hour": parse_hour(accidents["hrmn"]).to_numpy(dtype=float),
        "dep": _insee(accidents["dep"]),
        "com": _insee(accidents["com"]),
    }

    vehicles = frames["vehicules"][frames["vehicules"]["Num_Acc"].isin(row_of.index)].reset_index(drop=True)
    vehicles = vehicles.drop_duplicates(VEHICLE_KEY, keep="first").reset_index(drop=True)
    vehicle_columns = {"accident": row_of[vehicles["Num_Acc"]].to_numpy(dtype=float)}
    vehicle_columns |= _numbers(vehicles, [f.name for f in VEHICLE_FIELDS])

    vehicle_of = pd.Series(np.arange(len(vehicles)), index=pd.MultiIndex.from_frame(vehicles[VEHICLE_KEY]))
    users = frames["usagers"]
    users = users[pd.MultiIndex.from_frame(users[VEHICLE_KEY]).isin(vehicle_of.index)].reset_index(drop=True)
    user_columns = {
        "accident": row_of[users["Num_Acc"]].to_numpy(dtype=float),
        "vehicle": vehicle_of[pd.MultiIndex.from_frame(users[VEHICLE_KEY])].to_numpy(dtype=float),
    }
    user_columns |= _numbers(users, [f.name for f in USER_FIELDS if f.name != "actp"])
    user_columns["actp"] = np.array([_nan(actp_number(code)) for code in users["actp"]], dtype=float)
    return Tables(accidents["Num_Acc"].tolist(), accident_columns, vehicle_columns, user_columns)


def _nan(value: int | None) -> float:
    return np.nan if value is None else float(value)


def _insee(codes: pd.Series) -> np.ndarray:
    return np.array([_nan(insee_number(code)) for code in codes], dtype=float)


def outcomes(frames: dict[str, pd.DataFrame], accident_ids: list[str]) -> np.ndarray:
    """Per accident (in `accident_ids` order): 1 if a user was killed or hospitalised, 0 if the worst
    injury is slight or none, NaN when no user has a known injury code."""
    users = frames["usagers"]
    grav = numeric(users["grav"])
    known = grav.isin(list(SEVERITY_RANK))
    severe = grav.isin(list(SEVERE_CODES)).astype(float).where(known)
    per_accident = severe.groupby(users["Num_Acc"]).max()
    return per_accident.reindex(accident_ids).to_numpy(dtype=float)


def report_value(feature: Feature, text: str) -> int | float | str | None:
    """A raw BAAC value as a report carries it: the number when it is in the field's domain, else
    null (BAAC's -1 and codes the contract refuses are "unknown"); `actp` letters stay letters."""
    if feature.name == "actp" and text in ACTP_LETTERS:
        return text
    try:
        number = float(text.replace(",", "."))
    except ValueError:
        return None
    value: int | float = int(number) if feature.integer and number.is_integer() else number
    return value if feature.violation(value) is None else None


def report_bodies(frames: dict[str, pd.DataFrame], accident_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
    """The accidents `accident_ids` of the official tables as the JSON bodies a reporter would send
    (the report contract), by Num_Acc; an id the tables lack is left out. A body can still be
    refused by the contract (a required value BAAC left unknown, e.g. a vehicle of category -1):
    validate it before sending."""
    wanted = set(accident_ids)
    rows = {table: frame[frame["Num_Acc"].isin(wanted)] for table, frame in frames.items()}
    places = {row["Num_Acc"]: row for row in rows["lieux"].to_dict("records")}
    users: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for user in rows["usagers"].to_dict("records"):
        users.setdefault((user["Num_Acc"], user["id_vehicule"]), []).append(
            {feature.name: report_value(feature, user[feature.name]) for feature in USER_FIELDS})  # fmt: skip
    vehicles: dict[str, list[dict[str, Any]]] = {}
    for vehicle in rows["vehicules"].to_dict("records"):
        vehicles.setdefault(vehicle["Num_Acc"], []).append({
            **{feature.name: report_value(feature, vehicle[feature.name]) for feature in VEHICLE_FIELDS},
            "users": users.get((vehicle["Num_Acc"], vehicle["id_vehicule"]), []),
        })  # fmt: skip
    bodies: dict[str, dict[str, Any]] = {}
    for accident in rows["caracteristiques"].to_dict("records"):
        key, place = accident["Num_Acc"], places.get(accident["Num_Acc"])
        if place is None or key in bodies:
            continue
        bodies[key] = {
            "accident_id": key,
            "date": f"{accident['an']}-{int(accident['mois']):02d}-{int(accident['jour']):02d}",
            "hrmn": accident["hrmn"], "dep": accident["dep"], "com": accident["com"],
            **{feature.name: report_value(feature, accident[feature.name]) for feature in ACCIDENT_FIELDS},
            "place": {feature.name: report_value(feature, place[feature.name]) for feature in PLACE_FIELDS},
            "vehicles": vehicles.get(key, []),
        }  # fmt: skip
    return bodies


def accepted_reports(
    bodies: dict[str, dict[str, Any]], accident_ids: Iterable[str]
) -> tuple[list[dict[str, Any]], int]:
    """The bodies of `accident_ids` (in that order) the report contract accepts, and how many it
    refuses or the tables lack (BAAC left a required value unknown, e.g. a vehicle of category -1)."""
    accepted, refused = [], 0
    for accident in accident_ids:
        try:
            AccidentReport.model_validate(bodies.get(accident))
        except ValidationError:
            refused += 1
            continue
        accepted.append(bodies[accident])
    return accepted, refused
