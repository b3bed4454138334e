"""The prediction log on the real stack: rows of /predict kept with what served them, read back by
admins only, bad accident ids refused, the store locked -> /predict still answers, drops counted,
recovery; rows logged with the right version across a champion hot swap.

In-process apps (TestClient, real SQLite) and real uvicorn processes, each on its own state.
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests
from fastapi.testclient import TestClient

from accidents.features import FEATURE_NAMES, SEED_EXAMPLE
from accidents.store.prediction_log import read_window
from tests.api.conftest import create_user, login, project_with_champion, register, set_champion
from tests.support.monitoring import api_on_own_registry, metric, wait_for

pytestmark = pytest.mark.timeout(300)
SEED = list(SEED_EXAMPLE)
NAMED = dict(zip(FEATURE_NAMES, SEED, strict=True))


@pytest.fixture
def served_app(app_factory, champion_bundle, tmp_path: Path) -> TestClient:
    return app_factory(project_with_champion(tmp_path / "project", champion_bundle))


def flush(client: TestClient) -> None:
    assert client.app.state.services.prediction_log.writer.flush(30)


def test_rows_are_logged_and_read_back_by_admins_only(served_app: TestClient):
    client = served_app
    admin = login(client)
    user = create_user(client, admin, "reader")
    bodies = [
        {"features": SEED, "accident_id": "202100000001"},  # the seed's shape, with an id
        {**NAMED, "accident_id": 202100000002},  # by name, an integer id
        {"instances": [{"features": SEED, "accident_id": "202100000003"}, {**NAMED, "accident_id": None}, SEED]},
        {"features": SEED},  # the seed's body, unchanged
    ]
    for body in bodies:
        response = client.post("/predict", json=body, headers=user)
        assert response.status_code == 200, response.text
    flush(client)

    page = client.get("/monitoring/predictions", headers=admin)
    assert page.status_code == 200, page.text
    items = page.json()["items"]
    assert len(items) == 6 and page.json()["next_before_id"] is None
    assert [item["accident_id"] for item in items] == [None, None, None, "202100000003", "202100000002",
                                                       "202100000001"]  # newest first  # fmt: skip
    version = client.get("/model", headers=admin).json()["version"]
    for item in items:
        assert item["caller_role"] == "user" and item["model_version"] == version and item["model_source"] == "local"
        assert item["features"] == {name: float(value) for name, value in NAMED.items()}
        assert item["predicted_class"] == int(item["probability"] >= item["threshold"])
        assert len(item["request_id"]) == 16
    assert "reader" not in page.text and "Bearer" not in page.text  # the role is kept, never who or the token

    one = client.get("/monitoring/predictions", params={"accident_id": "202100000002"}, headers=admin).json()
    assert [item["accident_id"] for item in one["items"]] == ["202100000002"]
    first = client.get("/monitoring/predictions", params={"limit": 4}, headers=admin).json()
    rest = client.get("/monitoring/predictions", params={"limit": 4, "before_id": first["next_before_id"]},
                      headers=admin).json()  # fmt: skip
    assert len(first["items"]) == 4 and len(rest["items"]) == 2 and rest["next_before_id"] is None
    assert {i["id"] for i in first["items"]}.isdisjoint(i["id"] for i in rest["items"])
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    assert client.get("/monitoring/predictions", params={"since": future}, headers=admin).json()["items"] == []
    assert len(client.get("/monitoring/predictions", params={"until": future}, headers=admin).json()["items"]) == 6
    assert client.get("/monitoring/predictions", params={"model_version": "nope"}, headers=admin).json()["items"] == []

    assert client.get("/monitoring/predictions", headers=user).status_code == 403
    assert client.get("/monitoring/performance", headers=user).status_code == 403
    assert client.get("/monitoring/predictions").status_code == 401
    assert client.get("/monitoring/predictions", params={"accident_id": "12a"}, headers=admin).status_code == 422

    exposition = client.get("/metrics").text
    assert metric(exposition, "prediction_log_rows_total") == 6
    assert metric(exposition, "prediction_log_queue_depth") == 0
    assert metric(exposition, "prediction_log_dropped_total", reason="queue_full") == 0


BAD_ID_BODIES = [
    {"features": SEED, "accident_id": "1" * 21},  # too long
    {"features": SEED, "accident_id": "2021000000\x0001"},  # a NUL byte
    {"features": SEED, "accident_id": "202100000001\n"},  # a trailing newline
    {"features": SEED, "accident_id": "20210000000A"},
    {"features": SEED, "accident_id": 2021.5},  # wrong types
    {"features": SEED, "accident_id": True},
    {"features": SEED, "accident_id": ["202100000001"]},
    {"features": SEED, "accident_id": -1},
    {"features": SEED, "accident_id": 2**53},  # past what every JSON parser reads exactly
    {**NAMED, "accident_id": "x" * 10_000},
    {"instances": [SEED, {"features": SEED, "accident_id": "1" * 21}]},
]


def test_bad_accident_ids_get_422(served_app: TestClient):
    client = served_app
    headers = login(client)
    for body in BAD_ID_BODIES:
        response = client.post("/predict", json=body, headers=headers)
        assert response.status_code == 422, (body, response.text)
        (problem,) = response.json()["detail"]
        assert problem["loc"][-1] == "accident_id" and "digits" in problem["msg"], problem
    assert client.get("/monitoring/predictions", headers=headers).json()["items"] == []  # nothing reached the log


def test_logging_off_serves_and_stores_nothing(app_factory, champion_bundle, tmp_path):
    client = app_factory(project_with_champion(tmp_path / "project", champion_bundle), prediction_log_enabled=False)
    admin = login(client)
    assert client.post("/predict", json={"features": SEED, "accident_id": "1"}, headers=admin).status_code == 200
    assert client.get("/monitoring/predictions", headers=admin).json()["items"] == []
    assert metric(client.get("/metrics").text, "prediction_log_rows_total") == 0


def test_locked_store_keeps_predict_answering_counts_drops_and_recovers(api_server, champion_bundle, tmp_path):
    project = project_with_champion(tmp_path / "project", champion_bundle)
    log_file = tmp_path / "log" / "predictions.db"
    server = api_server(ACCIDENTS_PROJECT_DIR=str(project), STATE_DIR=str(tmp_path / "state"),
                        PREDICTION_LOG_URL=f"sqlite:///{log_file}", PREDICTION_LOG_FLUSH_SECONDS="0.05")  # fmt: skip
    headers = login(server.url)
    body = {"features": SEED, "accident_id": "202100000001"}
    locker = sqlite3.connect(log_file, isolation_level=None)
    locker.execute("BEGIN EXCLUSIVE")  # another writer holds the lock past every busy timeout
    try:
        for _ in range(30):
            answer = requests.post(f"{server.url}/predict", json=body, headers=headers, timeout=10)
            assert answer.status_code == 200
        wait_for(lambda: metric(requests.get(f"{server.url}/metrics", timeout=10).text, "prediction_log_dropped_total",
                                reason="write_failed") == 30, what="30 drops counted")  # fmt: skip
    finally:
        locker.execute("ROLLBACK")
        locker.close()
    for _ in range(20):
        assert requests.post(f"{server.url}/predict", json=body, headers=headers, timeout=10).status_code == 200
    wait_for(lambda: metric(requests.get(f"{server.url}/metrics", timeout=10).text, "prediction_log_rows_total") == 20,
             what="20 rows written after the lock went")  # fmt: skip
    assert len(read_window(f"sqlite:///{log_file}")) == 20
    assert "rows not written" in server.process.log_path.read_text()  # the drops are logged, not only counted


def test_rows_carry_the_version_that_served_them_across_a_hot_swap(api_server, champion_bundle, tmp_path):
    with api_on_own_registry(api_server, champion_bundle, tmp_path, MODEL_POLL_SECONDS="0.5") as stack:
        server, uri, first = stack.server, stack.uri, stack.version
        headers = login(server.url)
        second = register(uri, champion_bundle, threshold=0.2)
        answered: dict[str, str] = {}
        with requests.Session() as session:
            for index in range(2000):
                if index == 30:
                    set_champion(uri, second)
                accident_id = f"2021{index:08d}"
                response = session.post(f"{server.url}/predict", json={"features": SEED, "accident_id": accident_id},
                                        headers=headers, timeout=10)  # fmt: skip
                assert response.status_code == 200
                answered[accident_id] = response.json()["model_version"]
                if list(answered.values())[-20:].count(second) == 20:
                    break
        assert {first, second} <= set(answered.values())
        wait_for(lambda: metric(requests.get(f"{server.url}/metrics", timeout=10).text, "prediction_log_rows_total")
                 == len(answered), what="every answered row logged")  # fmt: skip
        logged = read_window(stack.log_url, model=None)  # every model's rows: /predict's are the seed's
        assert len(logged) == len(answered) and set(logged["model"]) == {"seed"}
        assert logged["report_features"].isna().all()
        assert dict(zip(logged["accident_id"], logged["model_version"], strict=True)) == answered
        thresholds = dict(zip(logged["model_version"], logged["threshold"], strict=False))
        assert thresholds[second] == 0.2 and thresholds[first] == champion_bundle.metadata.threshold
