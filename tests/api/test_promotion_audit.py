"""Issue #23 item 11b: POST /model/promote against a real MLflow server whose store refuses the
audit tags. It moved the alias first and wrote the tags after: a refused tag write answered 503
although the promotion had happened, with no record of who did it.

The failure is the store's own: a SQLite trigger in the server's backend database refuses writes
to the model-version tags table (all of them, or only the final `promotion=promoted`), while the
aliases table keeps working.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import mlflow
import pytest
import requests

from accidents.config import CHALLENGER_ALIAS, CHAMPION_ALIAS, MODEL_NAME
from accidents.model.model_store import ModelBundle
from tests.api.conftest import login, project_with_champion, register, set_champion
from tests.support.project import start_mlflow

pytestmark = pytest.mark.timeout(900)  # the first test also waits for the session's trained project


@pytest.fixture(scope="module")
def audit_registry(tmp_path_factory, champion_bundle):
    state = tmp_path_factory.mktemp("audit-mlflow")
    process, uri = start_mlflow(state)
    champion = register(uri, champion_bundle)
    challenger = register(uri, champion_bundle, threshold=0.3)
    yield uri, state / "mlflow.db", champion, challenger
    process.stop()


@contextmanager
def tag_writes_refused(database: Path, when: str = "1") -> Iterator[None]:
    """Writes to model_version_tags fail (on INSERT and UPDATE) while inside, when `when` holds."""
    with sqlite3.connect(database) as connection:
        for action in ("INSERT", "UPDATE"):
            connection.execute(f"CREATE TRIGGER refuse_{action.lower()} BEFORE {action} ON model_version_tags "
                               f"WHEN {when} BEGIN SELECT RAISE(ABORT, 'tag store refused'); END")  # fmt: skip
    try:
        yield
    finally:
        with sqlite3.connect(database) as connection:
            for action in ("insert", "update"):
                connection.execute(f"DROP TRIGGER refuse_{action}")


def serve(api_server, uri: str, champion_bundle, tmp_path: Path):
    project = project_with_champion(tmp_path / "project", champion_bundle)
    return api_server(ACCIDENTS_PROJECT_DIR=str(project), MLFLOW_TRACKING_URI=uri, STATE_DIR=str(tmp_path / "state"),
                      SHADOW_ENABLED="true", SHADOW_SHARE="1")  # fmt: skip


def aliases(uri: str) -> dict[str, str]:
    return mlflow.MlflowClient(uri).get_registered_model(MODEL_NAME).aliases


def reset(uri: str, champion: str, challenger: str) -> None:
    set_champion(uri, champion)
    mlflow.MlflowClient(uri).set_registered_model_alias(MODEL_NAME, CHALLENGER_ALIAS, challenger)


def test_a_refused_audit_record_refuses_the_promotion(audit_registry, champion_bundle, api_server, tmp_path):
    uri, database, champion, challenger = audit_registry
    reset(uri, champion, challenger)
    server = serve(api_server, uri, champion_bundle, tmp_path)
    admin = login(server.url)
    with tag_writes_refused(database):
        answer = requests.post(f"{server.url}/model/promote", json={"override": True}, headers=admin, timeout=60)
    assert answer.status_code == 503, answer.text
    assert "MLflow registry unavailable" in answer.json()["detail"]
    assert aliases(uri)[CHAMPION_ALIAS] == champion  # nothing moved without its record
    assert requests.get(f"{server.url}/model", headers=admin, timeout=10).json()["version"] == champion


def test_a_write_refused_after_the_move_is_a_warning_not_an_error(audit_registry, champion_bundle, api_server,
                                                                  tmp_path):  # fmt: skip
    uri, database, champion, challenger = audit_registry
    reset(uri, champion, challenger)
    server = serve(api_server, uri, champion_bundle, tmp_path)
    admin = login(server.url)
    with tag_writes_refused(database, when="NEW.value = 'promoted'"):
        answer = requests.post(f"{server.url}/model/promote", json={"override": True, "reason": "audit test"},
                               headers=admin, timeout=60)  # fmt: skip
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["promoted_version"] == challenger
    assert len(body["warnings"]) == 1 and "after the champion alias moved failed" in body["warnings"][0]
    assert aliases(uri)[CHAMPION_ALIAS] == challenger
    tags = mlflow.MlflowClient(uri).get_model_version(MODEL_NAME, challenger).tags
    assert (tags["promoted_by"], tags["promotion_reason"], tags["promotion"]) == ("admin", "audit test", "pending")
    assert requests.get(f"{server.url}/model", headers=admin, timeout=10).json()["version"] == challenger
    reset(uri, champion, challenger)


def test_a_synthetic_challenger_is_refused_even_with_an_override(audit_registry, champion_bundle, api_server,
                                                                 tmp_path):  # fmt: skip
    """Issue #23 item 2 on the API's side: the data-source guard stands above the override."""
    uri, _, champion, challenger = audit_registry
    synthetic = register(uri, ModelBundle(champion_bundle.model, replace(champion_bundle.metadata,
                                                                         data_source="synthetic")))  # fmt: skip
    reset(uri, champion, synthetic)
    server = serve(api_server, uri, champion_bundle, tmp_path)
    admin = login(server.url)
    assert requests.get(f"{server.url}/model", headers=admin, timeout=10).json()["challenger"]["version"] == synthetic
    answer = requests.post(f"{server.url}/model/promote", json={"override": True}, headers=admin, timeout=60)
    assert answer.status_code == 409, answer.text
    assert "even with an override" in answer.json()["detail"] and "synthetic data" in answer.json()["detail"]
    assert aliases(uri)[CHAMPION_ALIAS] == champion
    reset(uri, champion, challenger)
