"""Alerts that reach someone, end to end with real processes on loopback: the API (uvicorn, its
SQLite prediction log), Prometheus scraping it with the repo's rules and alerting section,
Alertmanager with the repo's routing (waits of 1 s), and the dashboard in a real Chromium.

A drift result like the drift job's on a night-only window (hour and lum drifted: 46 % of the
features; tests/monitoring/test_drift_job.py shows the real job concluding it on real accidents)
is in the store the API's gauges read, so `DatasetDrift` fires; Alertmanager delivers it to
`POST /monitoring/alerts` with the receiver's own secret; the dashboard lists it firing. A newer
no-drift result clears the gauge: Prometheus resolves the alert, Alertmanager delivers the
resolution, and the same row shows resolved. (The API's drift gauges are cached 30 s: most of the
test's ~1-2 minutes.)"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests

from accidents.store import drift_results
from accidents.store.prediction_log import create_log_engine, ensure_schema
from tests.api.conftest import closed_url, login, start_api
from tests.support.alertmanager import start_alertmanager
from tests.support.chromium import headless_page
from tests.support.monitoring import metric
from tests.support.prometheus import start_prometheus

pytestmark = pytest.mark.timeout(600)
SUMMARY = "15.38% of the features drifted (model version 3)"  # 2 of 13 compared features
TOKEN = "Zp4xQ8wN2vK7rT1yH6mB3cJ9sL5dF0gA-uE_oI"
NIGHT_SCORES = {"hour": 0.62, "lum": 0.55, "atm": 0.04, "vma": 0.02, "agg": 0.03, "int": 0.01, "catr": 0.02,
                "col": 0.05, "dep": 0.03, "lat": 0.02, "long": 0.02, "nbv": 0.01, "plan": 0.02}  # fmt: skip


def drift_result(verdict: str, drifted: list[str], at: datetime) -> dict:
    scores = NIGHT_SCORES if drifted else {feature: 0.01 for feature in NIGHT_SCORES}
    return {
        "computed_at": at, "window_start": at - timedelta(days=1), "window_end": at, "window_rows": 3000,
        "model_version": "3", "reference_rows": 30000, "feature_scores": scores, "drifted_features": drifted,
        "drifted_share": len(drifted) / len(scores), "prediction_drift": 0.02 if not drifted else 0.35,
        "verdict": verdict, "report_run_id": None, "method": "night-only replay (test)",
    }  # fmt: skip


def received(api_url: str, headers: dict[str, str], status: str) -> list[dict]:
    rows = requests.get(f"{api_url}/monitoring/alerts", headers=headers, timeout=10).json()
    return [row for row in rows if row["alertname"] == "DatasetDrift" and row["status"] == status]


def wait(condition, what: str, timeout: float = 180, logs: tuple = ()) -> object:
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached after {timeout} s\n" + "\n---\n".join(p.log_tail() for p in logs))
        time.sleep(0.5)
    return value


def test_dataset_drift_reaches_the_dashboard_through_alertmanager_and_resolves(tmp_path: Path):
    state = tmp_path / "state"
    log_url = f"sqlite:///{state / 'predictions.db'}"
    engine = create_log_engine(log_url)
    ensure_schema(engine, log_url)
    drift_results.store(engine, drift_result("drift", ["hour", "lum"], datetime.now(UTC)))  # the night window
    env = {"ACCIDENTS_PROJECT_DIR": str(tmp_path / "project"), "STATE_DIR": str(state),
           "MLFLOW_TRACKING_URI": closed_url(), "ALERTS_RECEIVER_TOKEN": TOKEN}  # fmt: skip
    api = start_api(tmp_path, env)
    alertmanager = start_alertmanager(tmp_path / "alertmanager", api.url, TOKEN)
    prometheus = start_prometheus(tmp_path / "prometheus", [api.url.removeprefix("http://")],
                                  alertmanagers=[alertmanager.address])  # fmt: skip
    logs = (api.process, alertmanager.process, prometheus.process)
    admin = login(api.url)
    try:
        (firing,) = wait(lambda: received(api.url, admin, "firing"), "DatasetDrift delivered firing", logs=logs)
        assert firing["labels"]["version"] == "3" and firing["severity"] == "warning"
        assert firing["annotations"]["summary"] == SUMMARY
        assert firing["receiver"] == "accidents-api" and firing["ends_at"] is None
        text = requests.get(f"{api.url}/metrics", timeout=10).text
        assert metric(text, "alerts_received_total", alertname="DatasetDrift", status="firing") >= 1

        with headless_page(tmp_path / "chromium-profile") as page:
            page.navigate(f"{api.url}/dashboard")
            page.evaluate("""(() => { const f = document.getElementById('login-form');
                f.username.value = 'admin'; f.password.value = 'admin123'; f.requestSubmit(); })()""")
            page.wait_for("document.querySelector('[data-panel=\"alerts\"]').dataset.state === 'ready'",
                          what="alerts panel drawn")  # fmt: skip
            card = "document.querySelector('[data-panel=\"alerts\"]')"
            assert "DatasetDrift" in page.evaluate(f"{card}.dataset.firing").split(",")
            text = page.evaluate(f"{card}.innerText")
            assert SUMMARY in text and "firing" in text

            # the next drift run finds nothing: the gauge falls, Prometheus resolves, Alertmanager tells the API
            drift_results.store(engine, drift_result("no_drift", [], datetime.now(UTC)))
            (resolved,) = wait(lambda: received(api.url, admin, "resolved"), "DatasetDrift delivered resolved",
                               logs=logs)  # fmt: skip
            assert resolved["fingerprint"] == firing["fingerprint"] and resolved["ends_at"] is not None
            assert received(api.url, admin, "firing") == []  # the same row, not a second one
            page.evaluate("refresh()")  # the page's own 60 s refresh, now
            page.wait_for(f"{card}.dataset.resolved.split(',').includes('DatasetDrift')", what="resolved shown")
            assert "DatasetDrift" not in page.evaluate(f"{card}.dataset.firing").split(",")
            # no model in this API: /model answers 503 (the badge says so); nothing else may fail
            assert [problem for problem in page.problems if not problem.endswith("/model")] == []
        text = requests.get(f"{api.url}/metrics", timeout=10).text
        assert metric(text, "alerts_received_total", alertname="DatasetDrift", status="resolved") >= 1
    finally:
        prometheus.stop()
        alertmanager.stop()
        api.stop()
        engine.dispose()
