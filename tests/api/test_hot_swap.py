"""Champion hot swap under load, a broken champion rejected, MLflow down -> the local copy serves.

These tests move the champion alias, so they use a registry of their own (a real MLflow
server started here) holding the real model the pipeline trained.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from accidents.features import SEED_EXAMPLE
from tests.api.conftest import login, project_with_champion, register, register_broken, set_champion
from tests.support.project import start_mlflow


@pytest.fixture(scope="module")
def own_registry(tmp_path_factory, champion_bundle):
    process, uri = start_mlflow(tmp_path_factory.mktemp("own-mlflow"))
    first = register(uri, champion_bundle)
    set_champion(uri, first)
    yield process, uri, first
    process.stop()


class Load:
    """Threads firing /predict until stopped; every answer recorded."""

    def __init__(self, url: str, headers: dict[str, str], workers: int = 4):
        self.url, self.headers = url, headers
        self.results: list[tuple[int, str | None]] = []
        self._stop = threading.Event()
        self._pool = ThreadPoolExecutor(workers)
        self._futures = [self._pool.submit(self._fire) for _ in range(workers)]

    def _fire(self) -> None:
        with requests.Session() as session:
            while not self._stop.is_set():
                try:
                    body = {"features": list(SEED_EXAMPLE)}
                    response = session.post(self.url, json=body, headers=self.headers, timeout=30)
                    version = response.json().get("model_version") if response.status_code == 200 else response.text
                    self.results.append((response.status_code, version))
                except requests.RequestException as error:
                    self.results.append((0, str(error)))

    def stop(self) -> list[tuple[int, str | None]]:
        self._stop.set()
        for future in self._futures:
            future.result()
        self._pool.shutdown()
        return self.results


def wait_version(url: str, headers: dict[str, str], version: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if requests.get(f"{url}/model", headers=headers, timeout=10).json()["version"] == version:
            return
        time.sleep(0.2)
    raise AssertionError(f"version {version} never served")


def test_hot_swap_broken_model_and_mlflow_down(own_registry, champion_bundle, api_server, tmp_path: Path):
    mlflow_process, uri, first = own_registry
    project = project_with_champion(tmp_path / "project", champion_bundle)
    server = api_server(ACCIDENTS_PROJECT_DIR=str(project), MLFLOW_TRACKING_URI=uri, MODEL_POLL_SECONDS="1")
    admin = login(server.url)
    assert requests.get(f"{server.url}/model", headers=admin, timeout=10).json()["version"] == first

    # 1. a new champion while 4 threads fire requests: picked up by polling, zero failures
    second = register(uri, champion_bundle, threshold=0.123)
    load = Load(f"{server.url}/predict", admin)
    time.sleep(1.0)
    set_champion(uri, second)
    wait_version(server.url, admin, second)
    time.sleep(1.0)
    results = load.stop()
    assert results and all(status == 200 for status, _ in results), [r for r in results if r[0] != 200][:5]
    versions = [version for _, version in results]
    assert first in versions and second in versions
    assert set(versions[-20:]) == {second}
    info = requests.get(f"{server.url}/model", headers=admin, timeout=10).json()
    assert info["threshold"] == 0.123 and info["source"] == "registry"

    # 2. a broken champion is rejected; the previous model keeps serving
    broken = register_broken(uri)
    set_champion(uri, broken)
    check = requests.post(f"{server.url}/model/reload", headers=admin, timeout=60).json()["check"]
    assert check["action"] == "rejected" and check["champion_version"] == broken and check["current_version"] == second
    answer = requests.post(f"{server.url}/predict", json={"features": list(SEED_EXAMPLE)}, headers=admin, timeout=30)
    assert answer.status_code == 200 and answer.json()["model_version"] == second
    set_champion(uri, second)

    # 3. MLflow goes down: still serving, reported as degraded
    mlflow_process.stop()
    load = Load(f"{server.url}/predict", admin, workers=2)
    check = requests.post(f"{server.url}/model/reload", headers=admin, timeout=60).json()["check"]
    time.sleep(2.5)  # a few polls fail meanwhile
    results = load.stop()
    assert check["action"] == "unavailable" and not check["registry_reachable"]
    assert results and all(status == 200 for status, _ in results)
    info = requests.get(f"{server.url}/model", headers=admin, timeout=10).json()
    assert info["degraded"] is True and info["version"] == second
    assert requests.get(f"{server.url}/ready", timeout=10).json()["degraded"] is True

    # 4. a fresh start while MLflow is down serves the pipeline's local champion copy
    fresh = api_server(ACCIDENTS_PROJECT_DIR=str(project), MLFLOW_TRACKING_URI=uri, STATE_DIR=str(tmp_path / "s2"))
    headers = login(fresh.url)
    info = requests.get(f"{fresh.url}/model", headers=headers, timeout=10).json()
    assert info["source"] == "local" and info["degraded"] is True
    assert info["version"] == champion_bundle.metadata.version
    answer = requests.post(f"{fresh.url}/predict", json={"features": list(SEED_EXAMPLE)}, headers=headers, timeout=30)
    assert answer.status_code == 200
