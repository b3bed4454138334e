"""Real 2021 accidents (the first 65 of the official tables, BAAC_DATA_DIR/2021-raw-sample) as
the official tables and as report requests built from the same rows."""

from __future__ import annotations

from typing import Any

import pandas as pd
import pytest

from accidents.data.sources import TABLES
from accidents.features import Feature
from accidents.pipeline.preprocess import read_official_table
from accidents.report_time.contract import ACCIDENT_FIELDS, PLACE_FIELDS, USER_FIELDS, VEHICLE_FIELDS


@pytest.fixture(scope="session")
def sample_tables(baac_dir) -> dict[str, pd.DataFrame]:
    folder = baac_dir / "2021-raw-sample"
    return {table: read_official_table(folder / f"{table}-2021.csv") for table in TABLES}


def code(feature: Feature, text: str) -> int | float | str | None:
    """A raw BAAC value as a report carries it: the number when it is in the domain, else null
    (BAAC's -1 and codes the contract refuses are "unknown"); `actp` letters stay letters."""
    if feature.name == "actp" and text in ("A", "B"):
        return text
    try:
        number = float(text.replace(",", "."))
    except ValueError:
        return None
    value: int | float = int(number) if feature.integer and number.is_integer() else number
    return value if feature.violation(value) is None else None


def report_of(tables: dict[str, pd.DataFrame], accident: str) -> dict[str, Any]:
    """The JSON body a reporter would send for accident `accident`, built from its raw rows."""
    caract = tables["caracteristiques"].set_index("Num_Acc").loc[accident]
    place = tables["lieux"].set_index("Num_Acc").loc[accident]
    vehicles = tables["vehicules"][tables["vehicules"]["Num_Acc"] == accident]
    users = tables["usagers"][tables["usagers"]["Num_Acc"] == accident]
    report: dict[str, Any] = {
        "accident_id": accident,
        "date": f"{caract['an']}-{int(caract['mois']):02d}-{int(caract['jour']):02d}",
        "hrmn": caract["hrmn"],
        "dep": caract["dep"],
        "com": caract["com"],
        **{feature.name: code(feature, caract[feature.name]) for feature in ACCIDENT_FIELDS},
        "place": {feature.name: code(feature, place[feature.name]) for feature in PLACE_FIELDS},
        "vehicles": [],
    }
    for _, vehicle in vehicles.iterrows():
        own = users[users["id_vehicule"] == vehicle["id_vehicule"]]
        report["vehicles"].append({
            **{feature.name: code(feature, vehicle[feature.name]) for feature in VEHICLE_FIELDS},
            "users": [{feature.name: code(feature, user[feature.name]) for feature in USER_FIELDS}
                      for _, user in own.iterrows()],
        })  # fmt: skip
    return report
