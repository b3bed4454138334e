"""Alerts that reach someone, end to end with real processes on loopback: the API (uvicorn, the
real champion, its SQLite prediction log), Prometheus scraping it with the repo's rules and
alerting section, Alertmanager with the repo's routing (waits of 1 s), the drift job in
.venv-monitoring, and the dashboard in a real Chromium.

Night-time 2021-H2 accidents are replayed through `POST /predict` (accidents.monitoring.replay
--night); the drift job, against the seasonal reference of the champion's training period
(tests/monitoring/test_drift_job.py's fixtures), finds drift on hour and lum, so the API's gauge
makes `DatasetDrift` fire; Alertmanager delivers it to `POST /monitoring/alerts` with the
receiver's own secret and the dashboard lists it firing. Then 5,000 unshifted accidents are
replayed: the next drift run finds none, Prometheus resolves the alert, Alertmanager delivers the
resolution, and the same row shows resolved. (The API caches its drift gauges 30 s.)"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
import requests

from accidents.store.received_alerts import STATUS_FIRING, STATUS_RESOLVED
from tests.api.conftest import closed_url, login, project_with_champion, start_api
from tests.monitoring import test_drift_job
from tests.support.alertmanager import start_alertmanager
from tests.support.chromium import headless_page
from tests.support.monitoring import metric, run_cli
from tests.support.project import data_dir
from tests.support.prometheus import start_prometheus

pytestmark = pytest.mark.timeout(900)
# the drift job's real accidents and seasonal reference (its tests' fixtures)
accidents, reference_file = test_drift_job.accidents, test_drift_job.reference_file
TOKEN = "Zp4xQ8wN2vK7rT1yH6mB3cJ9sL5dF0gA-uE_oI"
PERIOD = ("--from", "2021-07-01", "--to", "2021-12-31", "--source", "official")
CARD = "document.querySelector('[data-panel=\"alerts\"]')"


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


def test_dataset_drift_reaches_the_dashboard_through_alertmanager_and_resolves(champion_bundle, reference_file,
                                                                              tmp_path: Path):  # fmt: skip
    started = time.monotonic()
    state = tmp_path / "state"
    log_url = f"sqlite:///{state / 'predictions.db'}"
    project = project_with_champion(tmp_path / "project", champion_bundle)
    env = {"ACCIDENTS_PROJECT_DIR": str(project), "STATE_DIR": str(state), "MLFLOW_TRACKING_URI": closed_url(),
           "ALERTS_RECEIVER_TOKEN": TOKEN}  # fmt: skip
    api = start_api(tmp_path, env)
    alertmanager = start_alertmanager(tmp_path / "alertmanager", api.url, TOKEN)
    prometheus = start_prometheus(tmp_path / "prometheus", [api.url.removeprefix("http://")],
                                  alertmanagers=[alertmanager.address])  # fmt: skip
    logs = (api.process, alertmanager.process, prometheus.process)
    replay_env = {**os.environ, "BAAC_DATA_DIR": str(data_dir())}

    def replay(*selection: str, rows: int, logged: int) -> None:
        answer = run_cli("accidents.monitoring.replay", *PERIOD, "--limit", str(rows), "--batch-size", "100",
                         "--url", api.url, "--no-progress", "--json", *selection, env=replay_env)  # fmt: skip
        assert json.loads(answer.stdout.strip().splitlines()[-1])["accepted_rows"] == rows
        wait(lambda: metric(requests.get(f"{api.url}/metrics", timeout=10).text, "prediction_log_rows_total") == logged,
             f"{logged} rows logged", timeout=60, logs=logs)  # fmt: skip

    admin = login(api.url)
    try:
        replay("--night", rows=3000, logged=3000)
        night = test_drift_job.monitor(log_url, reference_file)
        assert night["verdict"] == "drift" and {"hour", "lum"} <= set(night["drifted_features"]), night
        (firing,) = wait(lambda: received(api.url, admin, STATUS_FIRING), "DatasetDrift delivered firing", logs=logs)
        assert firing["labels"]["version"] == str(champion_bundle.metadata.version) and firing["severity"] == "warning"
        assert firing["labels"]["model"] == "seed"  # the drift gauges say which model's traffic drifted
        assert firing["annotations"]["summary"].endswith("of the features drifted (seed model version "
                                                         f"{champion_bundle.metadata.version})")  # fmt: skip
        assert firing["receiver"] == "accidents-api" and firing["ends_at"] is None
        text = requests.get(f"{api.url}/metrics", timeout=10).text
        assert metric(text, "alerts_received_total", alertname="DatasetDrift", status="firing") >= 1

        with headless_page(tmp_path / "chromium-profile") as page:
            page.navigate(f"{api.url}/dashboard")
            page.evaluate("""(() => { const f = document.getElementById('login-form');
                f.username.value = 'admin'; f.password.value = 'admin123'; f.requestSubmit(); })()""")
            page.wait_for(f"{CARD}.dataset.state === 'ready'", what="alerts panel drawn")
            assert "DatasetDrift" in page.evaluate(f"{CARD}.dataset.firing").split(",")
            assert firing["annotations"]["summary"] in page.evaluate(f"{CARD}.innerText")

            # unshifted traffic: the next drift run finds none, Prometheus resolves, Alertmanager tells the API
            replay(rows=5000, logged=8000)
            calm = test_drift_job.monitor(log_url, reference_file)
            assert calm["verdict"] == "no_drift" and calm["window_rows"] == 5000, calm
            (resolved,) = wait(lambda: received(api.url, admin, STATUS_RESOLVED), "DatasetDrift delivered resolved",
                               logs=logs)  # fmt: skip
            assert resolved["fingerprint"] == firing["fingerprint"] and resolved["ends_at"] is not None
            assert received(api.url, admin, STATUS_FIRING) == []  # the same row, not a second one
            page.evaluate("refresh()")  # the page's own 60 s refresh, now
            page.wait_for(f"{CARD}.dataset.resolved.split(',').includes('DatasetDrift')", what="resolved shown")
            assert "DatasetDrift" not in page.evaluate(f"{CARD}.dataset.firing").split(",")
            assert page.problems == []
        text = requests.get(f"{api.url}/metrics", timeout=10).text
        assert metric(text, "alerts_received_total", alertname="DatasetDrift", status="resolved") >= 1
        print(f"alert delivery end to end: {time.monotonic() - started:.0f} s (after the fixtures)")
    finally:
        prometheus.stop()
        alertmanager.stop()
        api.stop()
