"""The serving process stays light: heavy libraries it does not need are never imported.

The real `uvicorn api.main:app` loads the champion from the real registry and serves both
scoring paths (compiled trees for one row, scikit-learn for a batch); when it exits, the list of
every module it imported is checked (README, Benchmarks: what each of them costs in memory).
"""

from __future__ import annotations

import json
import subprocess
import sys

import requests

from accidents.config import MODEL_NAME
from accidents.features import SEED_EXAMPLE
from api.serving.registry_client import MlflowRegistry, RegistryError
from tests.api.conftest import REPO, login, project_with_champion, start_api, trained_api_env

# Not needed to serve: MLflow's client with its GenAI, tracing and data modules (the registry is
# read over REST: api/serving/registry_client.py), pandas and pyarrow (requests are numpy arrays), pytest
# (pulled in by skops' default allow-list). api/serving/lean_imports.py refuses the last three.
# (opentelemetry's API package does load: FastAPI's own telemetry hooks import it.)
NOT_IN_SERVING = ("mlflow", "pandas", "pyarrow", "pytest")


def test_serving_process_imports_no_heavy_module_it_does_not_need(trained_project, tmp_path):
    report = tmp_path / "modules.json"
    env = {**trained_api_env(trained_project, tmp_path), "PYTHONPATH": str(REPO)}
    listing = (sys.executable, "-m", "tests.support.serve_and_list_modules", str(report))
    server = start_api(tmp_path, env, uvicorn=listing)
    try:
        headers = login(server.url)
        assert requests.get(f"{server.url}/model", headers=headers, timeout=30).json()["source"] == "registry"
        for body in ({"features": list(SEED_EXAMPLE)}, {"instances": [list(SEED_EXAMPLE)] * 200}):
            response = requests.post(f"{server.url}/predict", json=body, headers=headers, timeout=60)
            assert response.status_code == 200, response.text
    finally:
        server.stop()
    top_level = {name.partition(".")[0] for name in json.loads(report.read_text())}
    assert {"sklearn", "skops", "treelite", "uvicorn"} <= top_level  # the report is the serving process's
    assert sorted(top_level.intersection(NOT_IN_SERVING)) == []


def test_kept_out_modules_fail_with_a_clear_error_and_scikit_learn_still_imports():
    code = (
        "from api.serving.lean_imports import keep_heavy_modules_out\n"
        "keep_heavy_modules_out()\n"
        "import sklearn.utils.fixes\n"
        "assert sklearn.utils.fixes.pd is None\n"
        "import pandas\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert result.returncode == 1
    assert "KeptOutError: pandas is kept out of the API process" in result.stderr


def test_a_tracking_uri_that_is_not_a_server_serves_the_local_copy_and_says_why(app_factory, champion_bundle, tmp_path):
    registry = MlflowRegistry(f"sqlite:///{tmp_path / 'mlflow.db'}", timeout_seconds=2)
    try:
        registry.champion_version(MODEL_NAME)
        raise AssertionError("a sqlite URI cannot be read over REST")
    except RegistryError as error:
        assert "must be an http(s) URL" in str(error)
    finally:
        registry.close()
    project = project_with_champion(tmp_path / "project", champion_bundle)
    client = app_factory(project, mlflow_tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    body = client.get("/model", headers=login(client)).json()
    assert body["source"] == "local" and body["degraded"] is True
    assert "must be an http(s) URL" in body["last_check"]["detail"]
