"""Alertmanager's webhook receiver, `POST /monitoring/alerts`, in process with a real SQLite
prediction log (and the store's upsert on a real PostgreSQL too): only its own bearer secret gets
in (not a user's token), anything that is not a version-4 notification is a 4xx (never a 500),
firing then resolved is one row, a stale notification changes nothing, counts go to /metrics,
admins read the list. The whole path through a real Alertmanager: tests/e2e/test_alert_delivery.py."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient

from accidents.store import received_alerts
from accidents.store.prediction_log import create_log_engine, ensure_schema
from api.core.security import startup_problems
from tests.api.conftest import create_user, login, make_settings
from tests.support.monitoring import metric

pytestmark = pytest.mark.timeout(120)
TOKEN = "u7Rk2mXq9LpZ4sVw1NbT8cYe3HjD6gFa-0oQiW5"
STARTS = datetime(2026, 12, 4, 22, 0, tzinfo=UTC)
ZERO_TIME = "0001-01-01T00:00:00Z"  # Go's zero time: what Alertmanager sends for "no end yet"


def alert(status: str = "firing", fingerprint: str = "9a3f1c2b4d5e6f70", starts: datetime = STARTS,
          ends: str = ZERO_TIME, name: str = "DatasetDrift") -> dict:  # fmt: skip
    return {
        "status": status, "labels": {"alertname": name, "severity": "warning", "version": "3", "instance": "api:8000"},
        "annotations": {"summary": "46% of the features drifted (model version 3)"},
        "startsAt": starts.isoformat(), "endsAt": ends, "generatorURL": "http://prometheus:9090/graph",
        "fingerprint": fingerprint,
    }  # fmt: skip


def notification(*alerts: dict, status: str | None = None) -> dict:
    return {
        "version": "4", "groupKey": '{}:{alertname="DatasetDrift"}', "truncatedAlerts": 0,
        "status": status or alerts[0]["status"], "receiver": "accidents-api",
        "groupLabels": {"alertname": "DatasetDrift"},
        "commonLabels": {}, "commonAnnotations": {}, "externalURL": "http://alertmanager:9093", "alerts": list(alerts),
    }  # fmt: skip


BEARER = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def client(app_factory) -> TestClient:
    return app_factory(alerts_receiver_token=TOKEN)


def test_only_alertmanagers_own_secret_gets_in(client, app_factory):
    body = notification(alert())
    admin = login(client)  # a valid admin JWT is not the receiver's credential
    for headers in ({}, {"Authorization": "Bearer wrong"}, admin, {"Authorization": f"Basic {TOKEN}"},
                    {"Authorization": f"Bearer {TOKEN}x"}):  # fmt: skip
        answer = client.post("/monitoring/alerts", json=body, headers=headers)
        assert answer.status_code == 401, (headers, answer.text)
        assert answer.headers["www-authenticate"] == "Bearer"
    assert client.get("/monitoring/alerts", headers=admin).json() == []  # nothing stored
    assert client.post("/monitoring/alerts", json=body, headers=BEARER).status_code == 200
    unconfigured = app_factory()  # no ALERTS_RECEIVER_TOKEN: the receiver is off, nothing opens it
    answer = unconfigured.post("/monitoring/alerts", json=body, headers=BEARER)
    assert answer.status_code == 401 and "not configured: set ALERTS_RECEIVER_TOKEN" in answer.json()["detail"]


GARBAGE = {
    "not json": b"{not json",
    "empty": b"",
    "a list": b"[]",
    "version 3": json.dumps({**notification(alert()), "version": "3"}).encode(),
    "no alerts": json.dumps(notification(alert()) | {"alerts": []}).encode(),
    "no fingerprint": json.dumps(notification({k: v for k, v in alert().items() if k != "fingerprint"})).encode(),
    "bad fingerprint": json.dumps(notification(alert(fingerprint="'; drop table x; --"))).encode(),
    "no alertname": json.dumps(notification(alert() | {"labels": {"severity": "warning"}})).encode(),
    "bad status": json.dumps(notification(alert(status="exploded"))).encode(),
    "bad time": json.dumps(notification(alert() | {"startsAt": "yesterday"})).encode(),
    "labels not strings": json.dumps(notification(alert() | {"labels": {"alertname": ["x"]}})).encode(),
    "deep nesting": b'{"version": "4", "alerts": ' + b"[" * 5000 + b"]" * 5000 + b"}",
}


@pytest.mark.parametrize("name", GARBAGE)
def test_garbage_is_a_4xx_never_a_500_and_stores_nothing(client, name):
    answer = client.post(
        "/monitoring/alerts", content=GARBAGE[name], headers=BEARER | {"Content-Type": "application/json"}
    )
    assert answer.status_code == 422, answer.text
    assert isinstance(answer.json()["detail"], list) and "Traceback" not in answer.text
    assert client.get("/monitoring/alerts", headers=login(client)).json() == []


def test_an_oversized_notification_is_refused_before_it_is_read(client):
    many = notification(*[alert(fingerprint=f"{i:016x}") for i in range(1000)])  # ~600 KB > 256 KiB
    answer = client.post("/monitoring/alerts", json=many, headers=BEARER)
    assert answer.status_code == 413, answer.text
    streamed = client.post("/monitoring/alerts", content=iter([json.dumps(many).encode()]), headers=BEARER)
    assert streamed.status_code == 413  # no Content-Length: counted while read
    assert client.get("/monitoring/alerts", headers=login(client)).json() == []


def test_firing_then_resolved_is_one_row_counted_in_metrics(client):
    admin = login(client)
    first = client.post("/monitoring/alerts", json=notification(alert()), headers=BEARER)
    assert first.json() == {"received": 1, "changed": 1}
    (row,) = client.get("/monitoring/alerts", headers=admin).json()
    assert row["status"] == "firing" and row["alertname"] == "DatasetDrift" and row["ends_at"] is None
    assert row["severity"] == "warning" and row["labels"]["version"] == "3" and row["notifications"] == 1
    assert datetime.fromisoformat(row["starts_at"]) == STARTS and row["receiver"] == "accidents-api"

    ends = STARTS + timedelta(minutes=7)
    resolved = notification(alert("resolved", ends=ends.isoformat()))
    assert client.post("/monitoring/alerts", json=resolved, headers=BEARER).json()["changed"] == 1
    (row,) = client.get("/monitoring/alerts", headers=admin).json()
    assert row["status"] == "resolved" and datetime.fromisoformat(row["ends_at"]) == ends and row["notifications"] == 2

    # a retried firing of the same episode arriving late: resolved stays final
    assert client.post("/monitoring/alerts", json=notification(alert()), headers=BEARER).json()["changed"] == 0
    (row,) = client.get("/monitoring/alerts", headers=admin).json()
    assert row["status"] == "resolved"

    # the same labels firing again later: a new episode reopens the row; another alert is its own row
    later = STARTS + timedelta(hours=1)
    again = notification(alert(starts=later), alert(fingerprint="00000000000000aa", name="PredictionDrift"))
    assert client.post("/monitoring/alerts", json=again, headers=BEARER).json() == {"received": 2, "changed": 2}
    rows = client.get("/monitoring/alerts", headers=admin).json()
    assert sorted((r["alertname"], r["status"]) for r in rows) == [
        ("DatasetDrift", "firing"),
        ("PredictionDrift", "firing"),
    ]
    (drift,) = [r for r in rows if r["alertname"] == "DatasetDrift"]
    assert datetime.fromisoformat(drift["starts_at"]) == later and drift["ends_at"] is None

    text = client.get("/metrics").text
    assert metric(text, "alerts_received_total", alertname="DatasetDrift", status="firing") == 3
    assert metric(text, "alerts_received_total", alertname="DatasetDrift", status="resolved") == 1
    assert metric(text, "alerts_received_total", alertname="PredictionDrift", status="firing") == 1


def test_the_list_is_for_admins_only(client):
    admin = login(client)
    user = create_user(client, admin, "viewer")
    assert client.get("/monitoring/alerts", headers=user).status_code == 403
    assert client.get("/monitoring/alerts").status_code == 401
    assert client.get("/monitoring/alerts", headers=BEARER).status_code == 401  # the receiver's secret reads nothing
    assert client.get("/monitoring/alerts?limit=0", headers=admin).status_code == 422


@pytest.mark.parametrize("token", ["change-me-please-0123456789abcdefghij", "short", "a" * 48])
def test_a_weak_receiver_secret_is_refused_at_start_in_every_mode(tmp_path, token):
    for environment in ("local", "production"):
        settings = make_settings(tmp_path, alerts_receiver_token=token, environment=environment,
                                 jwt_secret="k3Jq9vX2pL8sW4nR7tY1uE6oI0aZ5cVbN-_mQwErTy",
                                 admin_password="a-real-admin-password")  # fmt: skip
        assert any(problem.startswith("ALERTS_RECEIVER_TOKEN") for problem in startup_problems(settings))
    assert not startup_problems(make_settings(tmp_path, alerts_receiver_token=TOKEN))


@pytest.fixture(params=["sqlite", "postgresql"])
def log_engine(request, tmp_path):
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'log.db'}"
    else:
        url = request.getfixturevalue("postgres").new_database("alerts")
    engine = create_log_engine(url)
    ensure_schema(engine, url)
    yield engine
    engine.dispose()


def row(status: str, starts: datetime, fingerprint: str = "ab12") -> dict:
    return {"fingerprint": fingerprint, "alertname": "DatasetDrift", "status": status, "severity": "warning",
            "labels": {"alertname": "DatasetDrift"}, "annotations": {}, "starts_at": starts,
            "ends_at": starts + timedelta(minutes=5) if status == "resolved" else None, "generator_url": None,
            "receiver": "accidents-api"}  # fmt: skip


def test_the_upsert_only_moves_forward_on_both_stores(log_engine):
    assert received_alerts.upsert(log_engine, [row("firing", STARTS)]) == 1
    assert received_alerts.upsert(log_engine, [row("firing", STARTS)]) == 1  # a repeat confirms
    assert received_alerts.upsert(log_engine, [row("resolved", STARTS)]) == 1
    assert received_alerts.upsert(log_engine, [row("firing", STARTS)]) == 0  # late retry of the episode
    assert received_alerts.upsert(log_engine, [row("firing", STARTS - timedelta(days=1))]) == 0  # older episode
    (stored,) = received_alerts.recent(log_engine)
    assert stored["status"] == "resolved" and stored["notifications"] == 3
    # an offset other than UTC is the same moment
    paris = STARTS.astimezone(datetime.fromisoformat("2026-01-01T00:00:00+01:00").tzinfo)
    assert received_alerts.upsert(log_engine, [row("firing", paris)]) == 0
    assert received_alerts.upsert(log_engine, [row("firing", STARTS + timedelta(hours=2))]) == 1
    (stored,) = received_alerts.recent(log_engine)
    assert stored["status"] == "firing" and stored["ends_at"] is None


def test_a_store_failure_is_a_503_alertmanager_retries_not_a_500(client):
    """The table gone (a broken or half-migrated log database): the receiver answers 503 with
    Retry-After (Alertmanager keeps the notification and retries) and counts nothing; once the
    table is back, the retried notification is stored."""
    admin = login(client)
    engine = client.app.state.services.prediction_log.engine
    with engine.begin() as connection:
        connection.exec_driver_sql("ALTER TABLE received_alerts RENAME TO received_alerts_away")
    try:
        answer = client.post("/monitoring/alerts", json=notification(alert()), headers=BEARER)
        listed = client.get("/monitoring/alerts", headers=admin)
    finally:
        with engine.begin() as connection:
            connection.exec_driver_sql("ALTER TABLE received_alerts_away RENAME TO received_alerts")
    assert (answer.status_code, listed.status_code) == (503, 503), answer.text
    assert (
        answer.headers["retry-after"] == "5"
        and answer.json()["detail"] == "prediction log store unavailable: retry later"
    )
    assert metric(client.get("/metrics").text, "alerts_received_total", alertname="DatasetDrift", status="firing") == 0
    assert client.post("/monitoring/alerts", json=notification(alert()), headers=BEARER).json()["changed"] == 1
    assert [row["status"] for row in client.get("/monitoring/alerts", headers=admin).json()] == ["firing"]
