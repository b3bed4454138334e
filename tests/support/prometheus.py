"""A real Prometheus server for tests (the Debian package's binary), on a free loopback port."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from accidents.stack.prometheus_config import write_config
from tests.support.processes import ManagedProcess, free_port, start_service

INSTALL_HINT = "install the Debian package `prometheus` (apt-get install prometheus; .ci/run does)"


def binary(name: str) -> str:
    """Path of `prometheus` or `promtool`; a failure (not a skip) when missing: CI installs them."""
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} not found on PATH: {INSTALL_HINT}")
    return path


@dataclass
class PrometheusServer:
    url: str
    process: ManagedProcess

    def api(self, path: str, **params: str) -> Any:
        """GET /api/v1/<path>: its `data` (asserts status success)."""
        answer = requests.get(f"{self.url}/api/v1/{path}", params=params, timeout=10).json()
        assert answer["status"] == "success", answer
        return answer["data"]

    def alerts(self, name: str) -> list[dict[str, Any]]:
        return [alert for alert in self.api("alerts")["alerts"] if alert["labels"]["alertname"] == name]

    def query(self, expr: str) -> list[dict[str, Any]]:
        return self.api("query", query=expr)["result"]

    def wait(self, condition: Callable[[], Any], timeout: float = 60, what: str = "condition") -> Any:
        deadline = time.monotonic() + timeout
        while True:
            value = condition()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"{what} not reached after {timeout} s\n{self.process.log_tail()}")
            time.sleep(0.25)

    def stop(self) -> None:
        self.process.stop()


def start_prometheus(folder: Path, targets: Sequence[str], interval: str = "1s",
                     alertmanagers: Sequence[str] = ()) -> PrometheusServer:  # fmt: skip
    """Prometheus scraping `targets` with the repo's alert rules, scrape and evaluation every
    `interval`, sending its alerts to `alertmanagers` (host:port)."""
    config = write_config(folder / "prometheus.yml", targets, scrape_interval=interval, evaluation_interval=interval,
                          alertmanagers=alertmanagers)  # fmt: skip
    port = free_port()
    cmd = [
        binary("prometheus"),
        f"--config.file={config}",
        f"--storage.tsdb.path={folder / 'tsdb'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--storage.tsdb.retention.time=1h",
    ]
    url = f"http://127.0.0.1:{port}"
    return PrometheusServer(url, start_service(cmd, folder / "prometheus.log", f"{url}/-/ready", timeout=60))
