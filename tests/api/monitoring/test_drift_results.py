"""Stored drift results through the API: `GET /monitoring/drift` (admins only, newest first) and the
Prometheus gauges read from the newest row (in-process app, real SQLite prediction log)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from accidents.store import drift_results
from tests.api.conftest import create_user, login, project_with_champion
from tests.support.monitoring import metric

pytestmark = pytest.mark.timeout(120)
NOW = datetime(2026, 12, 2, 3, 0, tzinfo=UTC)


def result(computed_at: datetime, verdict: str, scores: dict[str, float], drifted: list[str], **values) -> dict:
    return {
        "computed_at": computed_at, "window_start": computed_at - timedelta(days=1), "window_end": computed_at,
        "window_rows": 5000, "model_version": "3", "reference_rows": 20000, "feature_scores": scores,
        "drifted_features": drifted, "drifted_share": len(drifted) / len(scores) if scores else None,
        "prediction_drift": 0.02, "verdict": verdict, "report_run_id": "abc123", "method": "test", **values,
    }  # fmt: skip


def test_drift_results_are_served_to_admins_newest_first_and_exported_as_gauges(app_factory, champion_bundle,
                                                                                tmp_path: Path):  # fmt: skip
    client: TestClient = app_factory(project_with_champion(tmp_path / "project", champion_bundle))
    admin = login(client)
    user = create_user(client, admin, "viewer")
    assert client.get("/monitoring/drift", headers=admin).json() == []
    assert "feature_drift_score" not in client.get("/metrics").text  # nothing stored yet: no gauge

    engine = client.app.state.services.prediction_log.engine
    drift_results.store(engine, result(NOW - timedelta(days=1), "no_drift", {"hour": 0.02, "lum": 0.01}, []))
    drift_results.store(engine, result(NOW, "drift", {"hour": 0.9, "lum": 0.5, "vma": 0.03}, ["hour", "lum"],
                                       prediction_drift=0.31, model_version="4"))  # fmt: skip
    client.app.state.services.prediction_log._drift_gauges.cache_seconds = 0  # read at this scrape

    rows = client.get("/monitoring/drift", headers=admin).json()
    assert [row["verdict"] for row in rows] == ["drift", "no_drift"]
    assert rows[0]["feature_scores"] == {"hour": 0.9, "lum": 0.5, "vma": 0.03}
    assert rows[0]["drifted_features"] == ["hour", "lum"] and rows[0]["model_version"] == "4"
    assert datetime.fromisoformat(rows[0]["computed_at"]) == NOW  # UTC, with its offset
    assert [row["verdict"] for row in client.get("/monitoring/drift?limit=1", headers=admin).json()] == ["drift"]
    assert client.get("/monitoring/drift?limit=0", headers=admin).status_code == 422
    assert client.get("/monitoring/drift", headers=user).status_code == 403
    assert client.get("/monitoring/drift?model=nonsense", headers=admin).status_code == 422
    assert client.get("/monitoring/drift?model=report_time", headers=admin).json() == []  # the seed's only so far
    assert [row["model"] for row in rows] == ["seed", "seed"]
    assert client.get("/monitoring/drift").status_code == 401

    text = client.get("/metrics").text
    assert metric(text, "feature_drift_score", feature="hour", model="seed", version="4") == 0.9
    assert metric(text, "feature_drift_score", feature="vma", model="seed", version="4") == 0.03
    assert metric(text, "feature_drifted", feature="lum", model="seed", version="4") == 1
    assert metric(text, "feature_drifted", feature="vma", model="seed", version="4") == 0
    assert metric(text, "dataset_drift_share", model="seed", version="4") == pytest.approx(2 / 3)
    assert metric(text, "prediction_drift_score", model="seed", version="4") == 0.31
    assert metric(text, "drift_window_rows", model="seed", version="4") == 5000
    assert metric(text, "drift_verdict", model="seed", verdict="drift", version="4") == 1
    assert metric(text, "drift_verdict", model="seed", verdict="no_drift", version="4") == 0
    assert metric(text, "drift_last_run_timestamp_seconds", model="seed", version="4") == NOW.timestamp()
    assert 'version="3"' not in text.split("feature_drift_score", 1)[1]  # only the newest result
    assert 'model="report_time"' not in text  # no report-time drift run yet: no series of it

    # the report-time model's newest run (its version 1; older than the seed's newest): exported beside
    # the seed's, each under its model; served apart by /monitoring/drift?model=report_time
    drift_results.store(engine, result(NOW - timedelta(hours=1), "no_drift", {"n_users": 0.04, "hour": 0.2},
                                       ["hour"], model_version="1", model="report_time"))  # fmt: skip
    rows = client.get("/monitoring/drift?model=report_time", headers=admin).json()
    assert [(row["model"], row["model_version"], row["verdict"]) for row in rows] == [("report_time", "1", "no_drift")]
    assert [row["model"] for row in client.get("/monitoring/drift", headers=admin).json()] == ["seed", "seed"]
    text = client.get("/metrics").text
    assert metric(text, "feature_drift_score", feature="n_users", model="report_time", version="1") == 0.04
    assert metric(text, "feature_drifted", feature="hour", model="report_time", version="1") == 1
    assert metric(text, "dataset_drift_share", model="report_time", version="1") == 0.5
    assert metric(text, "drift_verdict", model="report_time", verdict="no_drift", version="1") == 1
    assert metric(text, "feature_drift_score", feature="hour", model="seed", version="4") == 0.9  # still the seed's
    assert metric(text, "dataset_drift_share", model="seed", version="4") == pytest.approx(2 / 3)


def test_every_monitoring_read_answers_503_with_retry_after_when_the_store_fails(app_factory, champion_bundle,
                                                                                  tmp_path: Path):  # fmt: skip
    """The store's tables gone (a broken or half-migrated log database): each /monitoring read is a
    503 the client may retry, not a 500, and answers again once the tables are back."""
    client: TestClient = app_factory(project_with_champion(tmp_path / "project", champion_bundle))
    admin = login(client)
    reads = ["/monitoring/predictions", "/monitoring/performance", "/monitoring/drift", "/monitoring/shadow",
             "/monitoring/prediction-stats", "/monitoring/estimates"]  # fmt: skip
    assert [client.get(path, headers=admin).status_code for path in reads] == [200] * len(reads)
    engine = client.app.state.services.prediction_log.engine
    tables = ("prediction_log", "realized_performance", "drift_results", "estimated_performance")

    def rename(suffix_from: str, suffix_to: str) -> None:
        with engine.begin() as connection:
            for table in tables:
                connection.exec_driver_sql(f"ALTER TABLE {table}{suffix_from} RENAME TO {table}{suffix_to}")

    rename("", "_away")
    try:
        answers = [client.get(path, headers=admin) for path in reads]
    finally:
        rename("_away", "")
    assert [answer.status_code for answer in answers] == [503] * len(reads)
    assert {answer.json()["detail"] for answer in answers} == {"prediction log store unavailable: retry later"}
    assert {answer.headers.get("retry-after") for answer in answers} == {"5"}
    assert [client.get(path, headers=admin).status_code for path in reads] == [200] * len(reads)
