"""The registry is no open control plane (issue #23 item 5), against a real MLflow server with its
basic auth (scripts/mlflow_server.sh with MLFLOW_AUTH_ADMIN_PASSWORD) and the accounts of
scripts/mlflow_accounts.py: nobody anonymous moves `champion`, the API's READ account cannot,
the pipeline's can; and the API refuses a version whose serving metadata is out of range
(a real registered version with a real model), keeping what it serves."""

from __future__ import annotations

import os
import secrets
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import mlflow
import numpy as np
import pytest
import requests
from sklearn.ensemble import HistGradientBoostingClassifier

from accidents.config import CHAMPION_ALIAS, MODEL_NAME, REPORT_MODEL_NAME
from accidents.features import N_FEATURES
from accidents.model.model_store import TRUSTED_TYPES
from accidents.model.registry import TAG_DATA_SOURCE, TAG_THRESHOLD
from api.serving.model_service import ModelService
from tests.support.processes import ManagedProcess, free_port, start_service

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "scripts"))
import mlflow_accounts  # noqa: E402 - scripts/ is no package

ALIAS = "/api/2.0/mlflow/registered-models/alias"


@dataclass
class AuthRegistry:
    uri: str
    env: dict[str, str]  # the admin's and every account's variables
    process: ManagedProcess

    def login(self, role: str) -> tuple[str, str]:
        prefix = "MLFLOW_AUTH_ADMIN_" if role == "admin" else f"MLFLOW_{role.upper()}_"
        return self.env.get(prefix + "USERNAME") or role, self.env[prefix + "PASSWORD"]


@pytest.fixture(scope="module")
def registry(tmp_path_factory) -> Iterator[AuthRegistry]:
    state = tmp_path_factory.mktemp("mlflow-auth")
    port = free_port()
    secret = {
        "MLFLOW_AUTH_ADMIN_PASSWORD": secrets.token_urlsafe(18),
        "MLFLOW_PIPELINE_PASSWORD": secrets.token_urlsafe(18),
        "MLFLOW_API_PASSWORD": secrets.token_urlsafe(18),
        "MLFLOW_PROMOTER_PASSWORD": secrets.token_urlsafe(18),
    }
    env = {**os.environ, "MLFLOW_PORT": str(port), "MLFLOW_HOST": "127.0.0.1", "MLFLOW_STATE_DIR": str(state), **secret}
    uri = f"http://127.0.0.1:{port}"
    script = str(REPO / "scripts" / "mlflow_server.sh")
    process = start_service(["bash", script], state / "server.log", f"{uri}/health", env=env, timeout=180)
    try:
        mlflow_accounts.provision(uri, secret)
        yield AuthRegistry(uri, secret, process)
    finally:
        process.stop()


def as_account(registry: AuthRegistry, role: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """MLflow's own client variables, as the pipeline and the API receive them."""
    username, password = registry.login(role)
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", username)
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", password)


@pytest.fixture(scope="module")
def logged_model(registry: AuthRegistry) -> str:
    """A real (small) model logged once by the pipeline's account; every test registers versions of it."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        as_account(registry, "pipeline", monkeypatch)
        rng = np.random.default_rng(0)
        x = rng.uniform(0, 100, size=(300, N_FEATURES))
        model = HistGradientBoostingClassifier(max_iter=5).fit(x, (x[:, 0] > 50).astype(int))
        mlflow.set_tracking_uri(registry.uri)
        mlflow.set_experiment("auth-tests")
        with mlflow.start_run():
            info = mlflow.sklearn.log_model(
                model, name="model", serialization_format="skops", skops_trusted_types=list(TRUSTED_TYPES)
            )
    return info.model_uri


def register(registry: AuthRegistry, model_uri: str, threshold: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """A new registered version of the logged model, by the pipeline's account, with `threshold`."""
    as_account(registry, "pipeline", monkeypatch)
    mlflow.set_tracking_uri(registry.uri)
    tags = {TAG_THRESHOLD: threshold, TAG_DATA_SOURCE: "real"}
    version = mlflow.register_model(model_uri, MODEL_NAME, tags=tags)
    return str(version.version)


def move_champion(registry: AuthRegistry, version: str, auth: tuple[str, str] | None) -> requests.Response:
    body = {"name": MODEL_NAME, "alias": CHAMPION_ALIAS, "version": version}
    return requests.post(registry.uri + ALIAS, json=body, auth=auth, timeout=10)


def test_anonymous_request_cannot_move_champion(registry):
    answer = move_champion(registry, "1", auth=None)
    assert answer.status_code == 401, answer.text
    assert requests.get(registry.uri + "/health", timeout=10).status_code == 200  # healthchecks need no login


def test_first_start_reads_as_no_champion_not_as_refused(registry, monkeypatch, tmp_path):
    """Before the first model, the API's account gets "no champion" (the trainer then trains), not
    the 403 the auth app answers for a registered model that does not exist yet."""
    as_account(registry, "api", monkeypatch)
    for name in (MODEL_NAME, REPORT_MODEL_NAME):  # both models the API serves
        service = ModelService(registry.uri, tmp_path / f"{name}.zip", 0, 10, model_name=name)
        try:
            assert service.registry.champion_version(name) is None, name
        finally:
            service.stop()


def test_only_the_pipeline_account_moves_champion(registry, logged_model, monkeypatch, tmp_path):
    version = register(registry, logged_model, "0.4", monkeypatch)
    refused = move_champion(registry, version, auth=registry.login("api"))
    assert refused.status_code == 403, refused.text
    tag = {"name": MODEL_NAME, "version": version, "key": TAG_THRESHOLD, "value": "nan"}
    api_tag = requests.post(registry.uri + "/api/2.0/mlflow/model-versions/set-tag", json=tag,
                            auth=registry.login("api"), timeout=10)  # fmt: skip
    assert api_tag.status_code == 403, api_tag.text
    moved = move_champion(registry, version, auth=registry.login("pipeline"))
    assert moved.status_code == 200, moved.text
    # evaluate and the promotion also delete the challenger alias: MLflow asks for MANAGE there
    alias = {"name": MODEL_NAME, "alias": "challenger"}
    endpoint = registry.uri + "/api/2.0/mlflow/registered-models/alias"
    for account in ("pipeline", "promoter"):
        login = registry.login(account)
        set_alias = requests.post(endpoint, json={**alias, "version": version}, auth=login, timeout=10)
        assert set_alias.status_code == 200, (account, set_alias.text)
        deleted = requests.delete(endpoint, json=alias, auth=login, timeout=10)
        assert deleted.status_code == 200, (account, deleted.text)
    as_account(registry, "api", monkeypatch)
    service = ModelService(registry.uri, tmp_path / "champion.zip", 0, 10)
    try:
        assert service.registry.champion_version(MODEL_NAME).version == version  # the API's account reads
    finally:
        service.stop()


def test_default_admin_password_is_refused(registry):
    answer = requests.get(registry.uri + "/api/2.0/mlflow/users/current", auth=("admin", "password1234"), timeout=10)
    assert answer.status_code == 401, answer.text


@pytest.mark.parametrize("threshold", ["nan", "5", "inf", "0", "1", "-0.2"])
def test_api_refuses_out_of_range_threshold_and_keeps_its_model(
    registry, logged_model, monkeypatch, caplog, tmp_path, threshold
):
    good = register(registry, logged_model, "0.4", monkeypatch)
    assert move_champion(registry, good, auth=registry.login("pipeline")).status_code == 200
    as_account(registry, "api", monkeypatch)
    service = ModelService(registry.uri, tmp_path / "champion.zip", 0, 10)
    try:
        assert service.check().action in ("loaded", "swapped")
        bad = register(registry, logged_model, threshold, monkeypatch)
        assert move_champion(registry, bad, auth=registry.login("pipeline")).status_code == 200
        as_account(registry, "api", monkeypatch)
        result = service.check()
        assert result.action == "rejected", result
        assert "decision_threshold" in result.detail and "between 0 and 1" in result.detail
        assert service.current.version == good
        assert service.current.bundle.metadata.threshold == 0.4
        assert any("rejected" in record.getMessage() for record in caplog.records)
    finally:
        service.stop()


def test_the_import_stage_reads_the_champion_with_the_pipeline_login(registry, monkeypatch):
    """import_data's synthetic guard asks the registry with MLflow's own login: without it a
    basic-auth registry answers 401, and every DAG run offline would read as 'cannot check'."""
    from accidents.pipeline.import_data import real_champion

    username, password = registry.login("pipeline")
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", username)
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", password)
    answer = real_champion(registry.uri) or ""
    assert "answered" not in answer and "unreachable" not in answer, answer
