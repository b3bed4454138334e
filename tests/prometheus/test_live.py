"""A real Prometheus (Debian's binary) scraping real APIs (uvicorn) on loopback, every second, with
the repo's alert rules: the targets' health, the exported series, and real rules going off.

Three targets: an API serving the real champion with a tiny prediction-log queue (a 200-row
request overflows it: PredictionLogDropping fires, it has no `for`), an API with no model
(NoModelLoaded goes pending: its `for` is one minute) and a port where nothing listens
(AccidentsApiDown pending). The healthy API raises neither of those."""

from __future__ import annotations

import math

import pytest
import requests

from accidents.features import SEED_EXAMPLE
from accidents.stack.prometheus_config import JOB
from tests.api.conftest import closed_url, login, project_with_champion
from tests.support.processes import free_port
from tests.support.prometheus import start_prometheus

pytestmark = pytest.mark.timeout(300)


def host_port(url: str) -> str:
    return url.removeprefix("http://")


def test_prometheus_scrapes_the_api_and_real_rules_fire(api_server, champion_bundle, tmp_path):
    project = project_with_champion(tmp_path / "project", champion_bundle)
    served = api_server(ACCIDENTS_PROJECT_DIR=str(project), STATE_DIR=str(tmp_path / "state"),
                        MLFLOW_TRACKING_URI=closed_url(), PREDICTION_LOG_QUEUE_ROWS="50")  # fmt: skip
    empty = api_server(ACCIDENTS_PROJECT_DIR=str(tmp_path / "empty"), STATE_DIR=str(tmp_path / "state-empty"),
                       MLFLOW_TRACKING_URI=closed_url())  # fmt: skip
    nobody = f"127.0.0.1:{free_port()}"
    prometheus = start_prometheus(tmp_path / "prometheus", [host_port(served.url), host_port(empty.url), nobody])
    try:
        # scrape config: every target found, the two APIs healthy, the closed port down
        def health() -> dict[str, str] | None:
            targets = prometheus.api("targets")["activeTargets"]
            states = {target["labels"]["instance"]: target["health"] for target in targets}
            return states if "unknown" not in states.values() and len(states) == 3 else None

        states = prometheus.wait(health, what="three scraped targets")
        assert states == {host_port(served.url): "up", host_port(empty.url): "up", nobody: "down"}
        assert {t["labels"]["job"] for t in prometheus.api("targets")["activeTargets"]} == {JOB}

        # series the rules read, as the API exports them
        (info,) = prometheus.wait(lambda: prometheus.query("model_info == 1"), what="model_info scraped")
        assert info["metric"]["instance"] == host_port(served.url)
        assert info["metric"]["version"] == str(champion_bundle.metadata.version)
        (test_auc,) = prometheus.query("model_test_auc")
        assert float(test_auc["value"][1]) == pytest.approx(champion_bundle.metadata.metrics["test_roc_auc"])

        # NoModelLoaded and AccidentsApiDown: pending on the right instances only
        def pending(name: str) -> set[str]:
            return {alert["labels"]["instance"] for alert in prometheus.alerts(name) if alert["state"] == "pending"}

        assert prometheus.wait(lambda: pending("NoModelLoaded"), what="NoModelLoaded pending") == {host_port(empty.url)}
        assert prometheus.wait(lambda: pending("AccidentsApiDown"), what="AccidentsApiDown pending") == {nobody}
        assert prometheus.alerts("PredictionLogDropping") == []

        # 200 rows in one request, a 50-row queue: 200 rows dropped -> the alert fires
        body = {"instances": [{"features": list(SEED_EXAMPLE)} for _ in range(200)]}
        answer = requests.post(f"{served.url}/predict", json=body, headers=login(served.url), timeout=30)
        assert answer.status_code == 200, answer.text

        def firing() -> list[dict]:
            return [alert for alert in prometheus.alerts("PredictionLogDropping") if alert["state"] == "firing"]

        (alert,) = prometheus.wait(firing, what="PredictionLogDropping firing")
        assert alert["labels"]["instance"] == host_port(served.url) and alert["labels"]["reason"] == "queue_full"
        assert alert["labels"]["severity"] == "warning" and "dropped" in alert["annotations"]["summary"]
        instance = host_port(served.url)
        (dropped,) = prometheus.query(f'prediction_log_dropped_total{{reason="queue_full", instance="{instance}"}}')
        assert float(dropped["value"][1]) == 200
        # the series HighPredictLatencyP99 and HighServerErrorRate select exist under those names
        buckets = f'http_request_duration_seconds_bucket{{route="/predict", instance="{instance}"}}'
        p99 = f"histogram_quantile(0.99, sum by (le) (rate({buckets}[1m])))"
        headers = login(served.url)

        def latency() -> float | None:  # a series' first sample has no rate: keep a little traffic going
            requests.post(f"{served.url}/predict", json={"features": list(SEED_EXAMPLE)}, headers=headers, timeout=10)
            result = prometheus.query(p99)
            value = float(result[0]["value"][1]) if result else math.nan
            return None if math.isnan(value) else value

        assert 0 < prometheus.wait(latency, what="p99 of /predict") < 10
        assert prometheus.query(f'http_requests_total{{route="/predict", status="200", instance="{instance}"}}')
    finally:
        prometheus.stop()
