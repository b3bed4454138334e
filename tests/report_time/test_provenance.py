"""The report-time features' provenance (accidents.report_time.provenance), checked by changing
each field of real 2021 accident reports (BAAC_DATA_DIR/2021-raw-sample, 65 accidents) to every
value of its domain, one vehicle or user at a time, and recomputing the 95 features through the
serving path (contract validation, tables_from_reports, accident_features):
- a feature a field changes names that field (credited or as a condition): no explanation credits
  a field the feature does not come from, or misses one it does;
- every field a feature credits does change it on some accident: no credit is made up (a
  condition may need rarer accidents than the sample holds: the first check covers it).
"""

from __future__ import annotations

import copy
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from accidents.features import Feature
from accidents.report_time.contract import (
    ACCIDENT_FIELDS,
    ACTP_LETTERS,
    PLACE_FIELDS,
    USER_FIELDS,
    VEHICLE_FIELDS,
    AccidentReport,
)
from accidents.report_time.features import REPORT_FEATURES, accident_features, tables_from_reports
from accidents.report_time.provenance import USERS, VEHICLES, FieldCredit, user, vehicle
from tests.report_time.conftest import report_of

# Values for the fields the contract checks as text, spread over years, hours and departments.
TEXT_VALUES = {
    "date": ["2005-01-01", "2021-07-14", "2021-12-31", "2040-02-29", "2100-06-30"],
    "hrmn": ["00:00", "07:45", "12:00", "18:30", "23:59"],
    "dep": ["01", "13", "2A", "59", "75", "971", "988"],
    "com": ["01001", "13055", "2A004", "59350", "75056", "97411", "98818"],
}


def domain(feature: Feature) -> list[Any]:
    """Every value a report may carry for `feature` (a range by its ends, middle and a few points)."""
    if feature.codes is not None:
        values: list[Any] = sorted(feature.codes)
    else:
        low, high = feature.minimum or 0.0, feature.maximum or 0.0
        values = sorted({low, high, (low + high) / 2, *np.linspace(low, high, 7).round().tolist()})
        if feature.integer:
            values = sorted({int(value) for value in values})
    if feature.name == "actp":
        values += list(ACTP_LETTERS)
    return values + ([None] if feature.nullable else [])


def perturbations(report: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(field path, the report with that one field changed) for every value of every field."""
    for name, values in TEXT_VALUES.items():
        for value in values:
            yield name, {**report, name: value}
    for feature in ACCIDENT_FIELDS:
        for value in domain(feature):
            yield feature.name, {**report, feature.name: value}
    for feature in PLACE_FIELDS:
        for value in domain(feature):
            yield f"place.{feature.name}", {**report, "place": {**report["place"], feature.name: value}}
    for v, own in enumerate(report["vehicles"]):
        for feature in VEHICLE_FIELDS:
            for value in domain(feature):
                changed = copy.deepcopy(report)
                changed["vehicles"][v][feature.name] = value
                yield vehicle(feature.name), changed
        for u in range(len(own["users"])):
            for feature in USER_FIELDS:
                for value in domain(feature):
                    changed = copy.deepcopy(report)
                    changed["vehicles"][v]["users"][u][feature.name] = value
                    yield user(feature.name), changed
    added_vehicle = copy.deepcopy(report)
    added_vehicle["vehicles"].append(copy.deepcopy(report["vehicles"][0]))
    yield VEHICLES, added_vehicle
    if report["vehicles"][0]["users"]:
        added_user = copy.deepcopy(report)
        added_user["vehicles"][0]["users"].append(copy.deepcopy(report["vehicles"][0]["users"][0]))
        yield USERS, added_user


def features_of(reports: list[dict[str, Any]]) -> np.ndarray:
    return accident_features(tables_from_reports([AccidentReport.model_validate(r) for r in reports]))


@pytest.fixture(scope="module")
def observed(sample_tables) -> dict[tuple[str, str], int]:
    """(field, feature) -> how many perturbations of that field changed that feature."""
    accidents = sample_tables["caracteristiques"]["Num_Acc"].tolist()
    counts: dict[tuple[str, str], int] = defaultdict(int)
    for accident in accidents:
        report = report_of(sample_tables, accident)
        changes = list(perturbations(report))
        rows = features_of([report] + [changed for _, changed in changes])
        base, others = rows[0], rows[1:]
        differs = ~((others == base) | (np.isnan(others) & np.isnan(base)))
        for (field, _), row in zip(changes, differs, strict=True):
            for column in np.flatnonzero(row):
                counts[(field, REPORT_FEATURES[column])] += 1
    return counts


def test_a_field_changes_only_the_features_that_name_it(observed):
    provenance = FieldCredit().provenance
    unnamed = sorted(
        (field, feature) for field, feature in observed
        if field not in (*provenance[feature].credited, *provenance[feature].conditions)
        and field not in (VEHICLES, USERS)  # a vehicle or user more changes every count over them
    )  # fmt: skip
    assert not unnamed, f"features a field changes without naming it: {unnamed}"


def test_every_field_a_feature_credits_changes_it(observed):
    provenance = FieldCredit().provenance
    made_up = sorted(
        (field, feature) for feature, origin in provenance.items()
        for field in origin.credited if observed.get((field, feature), 0) == 0
    )  # fmt: skip
    assert not made_up, f"fields credited that never change the feature: {made_up}"


def test_field_contributions_sum_to_the_feature_contributions():
    credit = FieldCredit()
    contributions = np.random.default_rng(0).normal(size=(7, len(REPORT_FEATURES)))
    fields = credit.of(contributions)
    assert fields.shape == (7, len(credit.fields))
    assert np.allclose(fields.sum(axis=1), contributions.sum(axis=1), atol=1e-12)
    # a feature credited to one field goes to it whole; one credited to k fields, 1/k to each
    only = np.zeros((1, len(REPORT_FEATURES)))
    only[0, REPORT_FEATURES.index("belt_share")] = 3.0
    shared = dict(zip(credit.fields, credit.of(only)[0], strict=True))
    assert {field: value for field, value in shared.items() if value} == {
        user("secu1"): 1.0,
        user("secu2"): 1.0,
        user("secu3"): 1.0,
    }
