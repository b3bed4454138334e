"""Stored estimates through a real uvicorn, on a SQLite file and on a real PostgreSQL server:
`GET /monitoring/estimates` (admins only, newest first, with the realized values once graded) and
the `model_estimated_*` / `model_estimate_auc_error` gauges in /metrics (the names the alert rules use)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests

from accidents.store import estimates
from accidents.store.prediction_log import REPORT_TIME_MODEL, create_log_engine
from tests.api.conftest import login
from tests.support.monitoring import metric

pytestmark = pytest.mark.timeout(180)
NOW = datetime(2026, 12, 4, 3, 0, tzinfo=UTC)


def estimate(version: str, auc: float, f1: float) -> dict:
    return {"model_version": version, "window_rows": 5000, "roc_auc": auc, "f1": f1, "precision": 0.41,
            "recall": 0.62, "positive_rate": 0.27, "predicted_positive_rate": 0.33, "threshold": 0.31,
            "method": "test", "calibration": {"ece_raw": 0.08, "ece_isotonic": 0.012}}  # fmt: skip


@pytest.fixture(params=["sqlite", "postgresql"])
def log_url(request, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'state' / 'predictions.db'}"
    return request.getfixturevalue("postgres").new_database("estimates_api")


def test_estimates_are_served_to_admins_and_exported_as_gauges(api_server, log_url, tmp_path):
    # no model needed: the monitoring reads serve what the jobs stored
    server = api_server(ACCIDENTS_PROJECT_DIR=str(tmp_path / "project"), STATE_DIR=str(tmp_path / "state"),
                        PREDICTION_LOG_URL=log_url)  # fmt: skip
    admin = login(server.url)
    created = requests.post(f"{server.url}/users", json={"username": "viewer", "password": "viewer-password",
                            "role": "user"}, headers=admin, timeout=10)  # fmt: skip
    assert created.status_code == 201, created.text
    user = login(server.url, "viewer", "viewer-password")
    engine = create_log_engine(log_url)  # the API migrated it at start
    try:
        day = timedelta(days=1)
        graded = estimates.store(engine, estimates.row_of(estimate("4", 0.79, 0.52), NOW - 3 * day, NOW - 2 * day,
                                                          computed_at=NOW - 2 * day))  # fmt: skip
        (row,) = [e for e in estimates.recent(engine, 5) if e["id"] == graded]
        estimates.record_grade(engine, row, 4800, 0.8125, 0.5)  # estimated 0.79: error -0.0225
        estimates.store(engine, estimates.row_of(estimate("4", 0.771, 0.505), NOW - day, NOW, computed_at=NOW))
        estimates.store(engine, estimates.row_of(estimate("3", 0.75, 0.48), NOW - day, NOW, computed_at=NOW - day))
        estimates.store(
            engine,
            estimates.row_of(estimate("4", 0.83, 0.6), NOW - day, NOW, computed_at=NOW + day, model=REPORT_TIME_MODEL),
        )  # the newest, of the other model
    finally:
        engine.dispose()

    def get(path: str, headers: dict | None = None) -> requests.Response:
        return requests.get(f"{server.url}{path}", headers=headers, timeout=10)

    rows = get("/monitoring/estimates", admin).json()
    assert [(r["model_version"], r["roc_auc"]) for r in rows] == [("4", 0.771), ("3", 0.75), ("4", 0.79)]
    assert rows[0]["realized_auc"] is None and rows[0]["graded_at"] is None
    assert (rows[2]["realized_rows"], rows[2]["realized_auc"], rows[2]["realized_f1"]) == (4800, 0.8125, 0.5)
    assert rows[2]["auc_error"] == pytest.approx(-0.0225) and rows[2]["f1_error"] == pytest.approx(0.02)
    assert datetime.fromisoformat(rows[0]["computed_at"]) == NOW  # UTC, with its offset
    assert [r["model_version"] for r in get("/monitoring/estimates?model_version=3", admin).json()] == ["3"]
    assert len(get("/monitoring/estimates?limit=1", admin).json()) == 1
    assert get("/monitoring/estimates?limit=0", admin).status_code == 422
    assert get("/monitoring/estimates?model_version=a%20b", admin).status_code == 422
    assert get("/monitoring/estimates", user).status_code == 403
    assert get("/monitoring/estimates?model=nonsense", admin).status_code == 422
    # the report-time model's estimates (its version "4" is not the seed's): apart, on ?model=report_time
    assert [r["model"] for r in rows] == ["seed"] * 3
    reports = get("/monitoring/estimates?model=report_time", admin).json()
    assert [(r["model"], r["model_version"], r["roc_auc"]) for r in reports] == [("report_time", "4", 0.83)]
    assert get("/monitoring/estimates").status_code == 401

    text = get("/metrics").text
    assert metric(text, "model_estimated_auc", model="seed", version="4") == 0.771  # the newest of each version
    assert metric(text, "model_estimated_auc", model="seed", version="3") == 0.75
    assert metric(text, "model_estimated_f1", model="seed", version="4") == 0.505
    assert metric(text, "model_estimated_precision", model="seed", version="4") == 0.41
    assert metric(text, "model_estimated_recall", model="seed", version="4") == 0.62
    assert metric(text, "model_estimated_positive_rate", model="seed", version="4") == 0.27
    assert metric(text, "model_estimate_auc_error", model="seed", version="4") == pytest.approx(0.0225)  # |error|
    assert 'model_estimate_auc_error{model="seed",version="3"}' not in text  # never graded: no error series
    # the report-time model's version 4: a series of its own, its newest estimate
    assert metric(text, "model_estimated_auc", model="report_time", version="4") == 0.83
    assert metric(text, "model_estimated_f1", model="report_time", version="4") == 0.6
    assert 'model_estimate_auc_error{model="report_time"' not in text
