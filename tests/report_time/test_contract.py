"""The report contract through a FastAPI app: real 2021 accidents are accepted as BAAC records
them, every code outside its official domain and every outcome field is a 422 that says why."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import ValidationError

from accidents.report_time.contract import TABLE_FIELDS, AccidentReport, ReportBatch
from tests.report_time.conftest import report_of

ACCIDENT = "202100000003"


@pytest.fixture(scope="module")
def client() -> TestClient:
    app = FastAPI()

    @app.post("/report")
    def report(batch: ReportBatch) -> dict[str, Any]:
        return {"accidents": len(batch.accidents), "ids": [accident.accident_id for accident in batch.accidents]}

    return TestClient(app)


@pytest.fixture(scope="module")
def body(sample_tables) -> dict[str, Any]:
    report = report_of(sample_tables, ACCIDENT)
    assert report["vehicles"][0]["users"]
    return report


def post(client: TestClient, *accidents: dict[str, Any]):
    return client.post("/report", json={"accidents": list(accidents)})


def problems(response) -> list[tuple[tuple, str]]:
    assert response.status_code == 422, response.text
    return [(tuple(problem["loc"]), problem["msg"]) for problem in response.json()["detail"]]


def test_a_batch_of_real_2021_accidents_is_accepted(client, sample_tables):
    accidents = sorted(set(sample_tables["caracteristiques"]["Num_Acc"]))
    response = post(client, *(report_of(sample_tables, accident) for accident in accidents))
    assert response.status_code == 200, response.text
    assert response.json() == {"accidents": 65, "ids": accidents}


def where(body: dict[str, Any], table: str) -> tuple[dict[str, Any], tuple]:
    """The object holding `table`'s fields in a report, and its location in the request."""
    return {
        "accident": (body, ("body", "accidents", 0)),
        "place": (body["place"], ("body", "accidents", 0, "place")),
        "vehicle": (body["vehicles"][0], ("body", "accidents", 0, "vehicles", 0)),
        "user": (body["vehicles"][0]["users"][0], ("body", "accidents", 0, "vehicles", 0, "users", 0)),
    }[table]


@pytest.mark.parametrize("table", sorted(TABLE_FIELDS))
def test_injury_severity_is_refused_wherever_it_appears(client, body, table):
    sent = copy.deepcopy(body)
    holder, location = where(sent, table)
    holder["grav"] = 1
    [(loc, message)] = problems(post(client, sent))
    assert loc == location
    assert "outcome the model predicts" in message and "grav" in message


def outside(feature) -> list[Any]:
    """Values just outside the domain, and values of the wrong kind."""
    if feature.codes is not None:
        bad = [max(feature.codes) + 1, min(feature.codes) - 1]
    else:
        bad = [feature.maximum + 1, feature.minimum - 1]
    return [*bad, "1", True] + ([1.5] if feature.integer else [])


CASES = [(table, feature, value) for table, fields in TABLE_FIELDS.items() for feature in fields
         for value in outside(feature)]  # fmt: skip


@pytest.mark.parametrize(("table", "feature", "value"), CASES,
                         ids=[f"{table}.{feature.name}={value!r}" for table, feature, value in CASES])  # fmt: skip
def test_every_code_outside_its_official_domain_is_refused(client, body, table, feature, value):
    sent = copy.deepcopy(body)
    holder, location = where(sent, table)
    holder[feature.name] = value
    found = problems(post(client, sent))
    assert [loc for loc, _ in found] == [(*location, feature.name)] or all(
        loc[: len(location) + 1] == (*location, feature.name) for loc, _ in found
    ), found
    if not isinstance(value, (str, bool)) and not (feature.integer and value == 1.5):
        assert any(feature.name in message for _, message in found), found


@pytest.mark.parametrize("table", sorted(TABLE_FIELDS))
def test_unknown_is_null_where_the_domain_allows_it_and_refused_elsewhere(client, body, table):
    for feature in TABLE_FIELDS[table]:
        sent = copy.deepcopy(body)
        holder, location = where(sent, table)
        holder[feature.name] = None
        response = post(client, sent)
        if feature.nullable:
            assert response.status_code == 200, (feature.name, response.text)
        else:
            assert [loc for loc, _ in problems(response)] == [(*location, feature.name)]


@pytest.mark.parametrize(("field", "value"), [
    ("date", "2021-02-30"), ("date", "yesterday"), ("date", "1999-01-01"), ("date", "2021-02-29"),
    ("date", "2021-09-25T00:00:00"), ("date", 1632528000), ("hrmn", "24:00"), ("hrmn", "7:32"),
    ("dep", "2C"), ("dep", "96"),
    ("com", "3031"), ("com", "2C004"), ("com", "00000"),
    ("accident_id", "12a"), ("accident_id", "1" * 21), ("vehicles", []),
    ("injured", 2),
])  # fmt: skip
def test_malformed_accident_fields_are_refused(client, body, field, value):
    sent = {**copy.deepcopy(body), field: value}
    [(loc, _)] = problems(post(client, sent))
    assert loc[:4] == ("body", "accidents", 0, field)


def test_corsica_and_overseas_codes_and_pedestrian_letters_are_accepted(body):
    sent = copy.deepcopy(body)
    sent |= {"dep": "2A", "com": "2A004", "accident_id": None}
    sent["vehicles"][0]["users"][0] |= {"catu": 3, "place": 10, "actp": "A"}
    report = AccidentReport.model_validate(sent)
    assert report.vehicles[0].users[0].actp == 10
    assert AccidentReport.model_validate({**sent, "dep": "974", "com": "97411"}).dep == "974"


def test_a_whole_number_written_as_a_float_is_the_integer(body):
    """JSON Schema's `integer` (what the OpenAPI document says) takes 2.0; so does the contract,
    as the seed's does, while "2", true and 2.5 stay refused."""
    sent = copy.deepcopy(body)
    sent["place"]["nbv"] = 2.0
    sent["vehicles"][0]["users"][0] |= {"an_nais": 1983.0, "actp": 3.0}
    report = AccidentReport.model_validate(sent)
    assert (report.place.nbv, report.vehicles[0].users[0].an_nais, report.vehicles[0].users[0].actp) == (2, 1983, 3)
    for refused in ("2", True, 2.5):
        with pytest.raises(ValidationError):
            AccidentReport.model_validate({**sent, "place": {**sent["place"], "nbv": refused}})


def test_an_empty_batch_and_a_bare_accident_are_refused(client, body):
    assert problems(client.post("/report", json={"accidents": []}))[0][0] == ("body", "accidents")
    assert problems(client.post("/report", json=body))
