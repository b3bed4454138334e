"""The real API (uvicorn) serving the champion the real pipeline registered, as a user meets it."""

from __future__ import annotations

import shlex
import subprocess

import pytest
import requests

from accidents.config import MODEL_NAME
from accidents.features import FEATURE_NAMES, SEED_EXAMPLE
from accidents.model.registry import champion_version, client
from tests.api.conftest import login

# The line from the README (and the project brief), verbatim except for the port.
SEED_CURL = (
    'curl -s -X POST localhost:{port}/predict -H "Authorization: Bearer $TOKEN" '
    '-H "Content-Type: application/json" '
    '-d \'{{"features": [10, 3, 1, 0.0, 2021, 60, 2, 1, 1, 3, 2, 1, 1, 50, 7, 12, 5, 77, 77317, 2, 1, 0, 6, 48.60, '
    "2.89, 17, 2, 1]}}'"
)
TOKEN_CURL = 'curl -s -X POST localhost:{port}/auth/token -d "username=admin&password=admin123"'


@pytest.fixture(scope="module")
def served(trained_project, tmp_path_factory):
    from tests.api.conftest import start_api, trained_api_env

    tmp = tmp_path_factory.mktemp("serving")
    server = start_api(tmp, trained_api_env(trained_project, tmp))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def registry_champion(trained_project):
    return champion_version(client(trained_project.tracking_uri), MODEL_NAME)


def shell(command: str, **env: str) -> str:
    result = subprocess.run(["bash", "-c", command], capture_output=True, text=True, check=True, timeout=60, env=env)
    return result.stdout


def test_the_design_curl_lines_work_verbatim(served, registry_champion):
    import json
    import os

    port = served.url.rsplit(":", 1)[1]
    token = json.loads(shell(TOKEN_CURL.format(port=port), PATH=os.environ["PATH"]))["access_token"]
    answer = json.loads(shell(SEED_CURL.format(port=port), PATH=os.environ["PATH"], TOKEN=token))
    assert answer["model_version"] == str(registry_champion.version)
    (row,) = answer["predictions"]
    assert row["class"] in (0, 1) and 0.0 <= row["probability"] <= 1.0
    assert row["class"] == int(row["probability"] >= row["threshold"])
    assert row["model_version"] == str(registry_champion.version)
    assert shlex.split(SEED_CURL)  # the command line stays valid shell


def test_named_and_batch_payloads_agree_with_the_list(served):
    headers = login(served.url)
    named = dict(zip(FEATURE_NAMES, SEED_EXAMPLE, strict=True))
    by_list = requests.post(f"{served.url}/predict", json={"features": list(SEED_EXAMPLE)}, headers=headers, timeout=30)
    by_name = requests.post(f"{served.url}/predict", json=named, headers=headers, timeout=30)
    assert by_list.status_code == by_name.status_code == 200
    assert by_list.json()["predictions"] == by_name.json()["predictions"]
    missing_age = {**named, "victim_age": None, "situ": None}  # nullable features accept null (-> NaN)
    batch = {"instances": [list(SEED_EXAMPLE), named, missing_age, {**named, "catv": 2, "vma": 130}]}
    response = requests.post(f"{served.url}/predict", json=batch, headers=headers, timeout=30)
    assert response.status_code == 200, response.text
    rows = response.json()["predictions"]
    assert len(rows) == 4 and rows[0] == rows[1] == by_list.json()["predictions"][0]
    assert all(0.0 <= row["probability"] <= 1.0 and row["class"] in (0, 1) for row in rows)


def test_full_batch_is_fast(served):
    headers = login(served.url)
    batch = {"instances": [list(SEED_EXAMPLE)] * 1000}
    response = requests.post(f"{served.url}/predict", json=batch, headers=headers, timeout=30)
    assert response.status_code == 200 and len(response.json()["predictions"]) == 1000
    assert response.elapsed.total_seconds() < 5


def test_model_info(served, registry_champion):
    headers = login(served.url)
    info = requests.get(f"{served.url}/model", headers=headers, timeout=30).json()
    assert info["version"] == str(registry_champion.version) and info["run_id"] == registry_champion.run_id
    assert info["source"] == "registry" and info["degraded"] is False
    assert info["data_source"] == "real" and info["synthetic"] is False and info["warning"] is None
    assert info["metrics"] and info["trained_at"] and 0.0 < info["threshold"] < 1.0
    reload = requests.post(f"{served.url}/model/reload", headers=headers, timeout=30)
    assert reload.json()["check"]["action"] == "unchanged"


def test_ops_endpoints(served, registry_champion):
    assert requests.get(f"{served.url}/health", timeout=10).json() == {"status": "ok"}
    ready = requests.get(f"{served.url}/ready", timeout=10)
    assert ready.status_code == 200 and ready.json()["model_version"] == str(registry_champion.version)
    headers = login(served.url)
    requests.post(f"{served.url}/predict", json={"features": list(SEED_EXAMPLE)}, headers=headers, timeout=30)
    metrics = requests.get(f"{served.url}/metrics", timeout=10).text
    assert 'http_requests_total{method="POST",route="/predict",status="200"}' in metrics
    assert 'http_request_duration_seconds_bucket{le="0.05",method="POST",route="/predict",status="200"}' in metrics
    assert "predictions_total{" in metrics
    assert f'model_info{{data_source="real",source="registry",version="{registry_champion.version}"}} 1.0' in metrics
    log = served.process.log_path.read_text()
    token = headers["Authorization"].split()[1]
    assert '"route": "/predict"' in log and token not in log
