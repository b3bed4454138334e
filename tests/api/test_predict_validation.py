"""/predict input handling: every malformed or out-of-contract payload is a 4xx naming what is wrong.

The validation runs before the model is looked up, so these tests need no model: a valid
payload answers 503 here (no model yet), which is itself checked.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from accidents.features import FEATURE_NAMES, FEATURES, N_FEATURES, SEED_EXAMPLE
from api.serving.prediction import VECTORIZED_MIN_ROWS, _all_valid_matrix, _valid_single_row, parse_rows
from tests.api.conftest import login
from tests.pipeline.test_features import candidates

SEED = list(SEED_EXAMPLE)
NAMED = dict(zip(FEATURE_NAMES, SEED_EXAMPLE, strict=True))


def with_value(name: str, value: object) -> list[object]:
    row: list[object] = list(SEED)
    row[FEATURE_NAMES.index(name)] = value
    return row


@pytest.fixture
def user(client):
    return login(client)


def post_raw(client, headers, body: bytes | str, **kwargs):
    return client.post("/predict", content=body, headers={**headers, "Content-Type": "application/json"}, **kwargs)


def problems(response) -> list[dict]:
    assert response.status_code == 422, response.text
    return response.json()["detail"]


def test_valid_payloads_answer_503_with_a_clear_message_before_any_model(client, user):
    for body in ({"features": SEED}, NAMED, {"instances": [SEED, NAMED]}):
        response = client.post("/predict", json=body, headers=user)
        assert response.status_code == 503
        assert "no model is loaded yet" in response.json()["detail"]
    assert client.get("/ready").status_code == 503
    assert client.get("/health").json() == {"status": "ok"}


@pytest.mark.parametrize("length", [0, 1, N_FEATURES - 1, N_FEATURES + 1])
def test_wrong_length(client, user, length):
    detail = problems(client.post("/predict", json={"features": (SEED * 2)[:length]}, headers=user))
    assert detail[0]["loc"] == ["body", "features"] and f"exactly {N_FEATURES} values" in detail[0]["msg"]


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e999", "-1e400"])
def test_non_finite_numbers(client, user, literal):
    body = '{"features": [' + ", ".join([literal, *map(str, SEED[1:])]) + "]}"
    detail = problems(post_raw(client, user, body))
    assert "finite" in detail[0]["msg"] or "infinity" in detail[0]["msg"].lower()


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("catv", 7, "catv must be one of 1, 2, 3, 4, 5, 6, got 7"),
        ("atm", 2, "atm must be one of 0, 1"),
        ("place", 0, "place must be one of"),
        ("hour", 24, "hour must be one of"),
        ("lat", 90.5, "lat must be a number in [-90, 90]"),
        ("vma", 0, "vma must be an integer in [1, 999]"),
        ("catu", 1.5, "catu must be a whole number"),
        ("sexe", "1", "sexe must be a number"),
        ("lum", True, "lum must be a number"),
        ("catr", None, "catr is required"),
        ("mois", [1], "mois must be a number"),
        ("dep", {"code": 77}, "dep must be a number"),
    ],
)
def test_out_of_contract_values_name_the_field_and_rule(client, user, name, value, expected):
    detail = problems(client.post("/predict", json={"features": with_value(name, value)}, headers=user))
    assert detail == [{"loc": ["body", "features", name], "msg": detail[0]["msg"], "type": "value_error"}]
    assert expected in detail[0]["msg"]


@pytest.mark.parametrize(
    ("name", "value"),
    [("catv", 7), ("lat", 90.5), ("catu", 1.5), ("sexe", "1"), ("lum", True), ("catr", None), ("mois", [1]),
     ("vma", 10**18), ("dep", -(2**62)), ("victim_age", 121)],
)  # fmt: skip
def test_big_batches_report_the_same_problems_as_single_rows(client, user, name, value):
    """Batches of VECTORIZED_MIN_ROWS rows or more are checked in one vectorized pass first;
    a single bad value anywhere still gets the precise per-value message."""
    alone = problems(client.post("/predict", json={"features": with_value(name, value)}, headers=user))
    rows: list[object] = [SEED, NAMED] * VECTORIZED_MIN_ROWS
    rows[-3] = with_value(name, value)
    in_batch = problems(client.post("/predict", json={"instances": rows}, headers=user))
    assert in_batch == [{**alone[0], "loc": ["body", "instances", len(rows) - 3, name]}]


def test_big_valid_batches_with_nulls_pass_validation(client, user):
    nullable = [feature.name for feature in FEATURES if feature.nullable]
    rows = [with_value(nullable[0], None), {**NAMED, nullable[-1]: None}] * VECTORIZED_MIN_ROWS
    response = client.post("/predict", json={"instances": rows}, headers=user)
    assert response.status_code == 503, response.text  # valid: only the missing model stops it


def test_named_payload_errors(client, user):
    missing = {key: value for key, value in NAMED.items() if key != "lum"}
    detail = problems(client.post("/predict", json=missing, headers=user))
    assert detail == [{"loc": ["body", "lum"], "msg": detail[0]["msg"], "type": "missing"}]
    detail = problems(client.post("/predict", json={**NAMED, "speed": 3}, headers=user))
    assert detail[0]["loc"] == ["body", "speed"] and "unknown feature" in detail[0]["msg"]
    detail = problems(client.post("/predict", json={**NAMED, "atm": 5}, headers=user))
    assert detail[0]["loc"] == ["body", "atm"]


def test_every_feature_rejects_a_string(client, user):
    detail = problems(client.post("/predict", json={"features": ["x"] * N_FEATURES}, headers=user))
    assert [problem["loc"][-1] for problem in detail] == [feature.name for feature in FEATURES]


def test_batch_errors_name_row_and_field(client, user):
    body = {"instances": [SEED, {**NAMED, "catv": 9}, with_value("surf", -1), "row"]}
    detail = problems(client.post("/predict", json=body, headers=user))
    locs = [problem["loc"] for problem in detail]
    assert locs == [["body", "instances", 1, "catv"], ["body", "instances", 2, "surf"], ["body", "instances", 3]]


def test_oversized_and_empty_batches(client, user):
    detail = problems(client.post("/predict", json={"instances": [SEED] * 1001}, headers=user))
    assert detail[0]["loc"] == ["body", "instances"] and "limit of 1000" in detail[0]["msg"]
    assert problems(client.post("/predict", json={"instances": []}, headers=user))[0]["loc"] == ["body", "instances"]
    not_rows = problems(client.post("/predict", json={"instances": SEED}, headers=user))
    assert not_rows[0]["loc"] == ["body", "instances", 0]


def test_batch_limit_is_configurable(app_factory):
    small = app_factory(max_batch_rows=3)
    headers = login(small)
    assert small.post("/predict", json={"instances": [SEED] * 4}, headers=headers).status_code == 422
    assert small.post("/predict", json={"instances": [SEED] * 3}, headers=headers).status_code == 503


@pytest.mark.parametrize(
    "body",
    [b"", b"   ", b"not json", b"[1, 2]", b'"text"', b"42", b"null", b'{"features": ', b'{"features": null}',
     b'{"features": {"place": 10}}', b'{"features": [], "instances": []}', b"{}", b'{"instances": null}',
     b"\xff\xfe", b'{"features": [' + b"9" * 400 + b"]}"],
)  # fmt: skip
def test_garbage_bodies_are_422_never_500(client, user, body):
    response = post_raw(client, user, body)
    assert response.status_code == 422, response.text
    assert "Traceback" not in response.text and response.json()["detail"]


def test_body_size_limit_is_413(app_factory):
    small = app_factory(max_body_bytes=4096)
    headers = login(small)
    big = b'{"instances": [' + b",".join([str(SEED).encode()] * 100) + b"]}"
    assert len(big) > 4096
    assert post_raw(small, headers, big).status_code == 413

    def chunks():  # no Content-Length: the streamed body is counted as it arrives
        yield big[:3000]
        yield big[3000:]

    assert post_raw(small, headers, chunks()).status_code == 413
    assert post_raw(small, headers, str({"features": SEED}).replace("'", '"')).status_code == 503


def test_valid_big_batches_take_the_vectorized_path():
    """The fast path itself (its speed is measured by `make bench`): valid list and named rows,
    nulls where allowed, give the same matrix as the per-value check; any problem gives None."""
    nullable = next(feature.name for feature in FEATURES if feature.nullable)
    rows: list[object] = [SEED, NAMED, with_value(nullable, None)] * VECTORIZED_MIN_ROWS
    matrix = _all_valid_matrix(rows)
    assert matrix is not None and matrix.shape == (len(rows), N_FEATURES)
    body = json.dumps({"instances": rows[: VECTORIZED_MIN_ROWS - 1]}).encode()  # below: per-value path
    np.testing.assert_array_equal(matrix[: VECTORIZED_MIN_ROWS - 1], parse_rows(body, 1000))
    for bad in (with_value("catv", 7), with_value("lum", True), {**NAMED, "speed": 3}, SEED[:-1]):
        assert _all_valid_matrix([*rows, bad]) is None


@pytest.mark.parametrize("feature", FEATURES, ids=[feature.name for feature in FEATURES])
def test_single_row_fast_path_agrees_with_the_per_value_rule(feature):
    """A single list row is first checked by one precompiled check per column (api.serving.prediction
    VALUE_CHECKS): it must accept exactly the values the per-value rule accepts, and give the same
    matrix; anything else goes to the per-value path and its messages."""
    whole = [
        int(value)
        for value in candidates(feature)
        if value is not None and math.isfinite(value) and value == int(value)
    ]
    for value in [*candidates(feature), *whole, True, False, "1", [1], 10**18, -(2**63), 2**64 - 1]:
        row = with_value(feature.name, value)
        matrix = _valid_single_row(row)
        expected = feature.violation(value) is None
        assert (matrix is not None) is expected, (feature.name, value)
        if expected:
            np.testing.assert_array_equal(matrix, np.array([[math.nan if v is None else v for v in row]]))
