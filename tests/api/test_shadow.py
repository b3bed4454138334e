"""The shadow challenger on live traffic: real uvicorn servers on a real MLflow registry of their own
(champion and challenger: the real model the pipeline trained, registered twice, the challenger with
another decision threshold, so both disagree on a known share of rows)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import mlflow
import numpy as np
import pytest
import requests
from prometheus_client import CollectorRegistry
from sklearn.ensemble import HistGradientBoostingClassifier

from accidents.config import CHALLENGER_ALIAS, MODEL_NAME
from accidents.features import SEED_EXAMPLE
from accidents.model.compiled_trees import probe_rows
from accidents.model.model_store import ModelBundle
from api.serving.model_service import SOURCE_REGISTRY, Served
from api.serving.shadow import DROP_SCORE_FAILED, ShadowMetrics, ShadowScorer
from tests.api.conftest import create_user, login, project_with_champion, register, register_broken, set_champion
from tests.api.test_hot_swap import Load, wait_version
from tests.support.monitoring import metric, wait_for
from tests.support.project import start_mlflow

CHALLENGER_THRESHOLD = 0.3


def set_challenger(uri: str, version: str) -> None:
    mlflow.MlflowClient(uri).set_registered_model_alias(MODEL_NAME, CHALLENGER_ALIAS, version)


@pytest.fixture(scope="module")
def shadow_registry(tmp_path_factory, champion_bundle):
    process, uri = start_mlflow(tmp_path_factory.mktemp("shadow-mlflow"))
    champion = register(uri, champion_bundle)
    challenger = register(uri, champion_bundle, threshold=CHALLENGER_THRESHOLD)
    set_champion(uri, champion)
    set_challenger(uri, challenger)
    yield uri, champion, challenger
    process.stop()


def rows_to_send(count: int = 40) -> list[list[float | None]]:
    """Valid contract rows, missing values included (JSON null)."""
    return [[None if np.isnan(value) else float(value) for value in row] for row in probe_rows(count)[:count]]


def start(api_server, uri: str, project: Path, tmp: Path, name: str, **env: str):
    return api_server(ACCIDENTS_PROJECT_DIR=str(project), MLFLOW_TRACKING_URI=uri, STATE_DIR=str(tmp / name), **env)


def test_shadow_on_and_off_answer_identically(shadow_registry, champion_bundle, api_server, tmp_path):
    uri, champion, challenger = shadow_registry
    set_champion(uri, champion)
    set_challenger(uri, challenger)
    project = project_with_champion(tmp_path / "project", champion_bundle)
    on = start(api_server, uri, project, tmp_path, "on", SHADOW_ENABLED="true", SHADOW_SHARE="1")
    off = start(api_server, uri, project, tmp_path, "off", SHADOW_ENABLED="false")
    heads = {server.url: login(server.url) for server in (on, off)}

    info = requests.get(f"{on.url}/model", headers=heads[on.url], timeout=10).json()
    assert info["version"] == champion and info["shadow_enabled"] is True
    assert info["challenger"]["version"] == challenger and info["challenger"]["threshold"] == CHALLENGER_THRESHOLD
    assert requests.get(f"{off.url}/model", headers=heads[off.url], timeout=10).json()["challenger"] is None

    rows = rows_to_send()
    bodies = [{"features": row} for row in rows] + [{"instances": rows[:10]}]
    answers = {}
    for server in (on, off):
        answers[server.url] = [
            requests.post(f"{server.url}/predict", json=body, headers=heads[server.url], timeout=30).json()
            for body in bodies
        ]
    assert answers[on.url] == answers[off.url]  # byte for byte the champion's answers
    served = [row for answer in answers[on.url] for row in answer["predictions"]]
    assert {row["model_version"] for row in served} == {champion}

    # the shadow: every row scored by the challenger, off the request path
    expected_agreement = np.mean([row["class"] == int(row["probability"] >= CHALLENGER_THRESHOLD) for row in served])
    labels = {"challenger_version": challenger, "champion_version": champion, "model": "seed"}

    def shadow_rows() -> float:
        return metric(requests.get(f"{on.url}/metrics", timeout=10).text, "shadow_rows_total", **labels)

    wait_for(lambda: shadow_rows() == len(served), what="every row shadowed")
    text = requests.get(f"{on.url}/metrics", timeout=10).text
    assert metric(text, "shadow_agreement_rate", **labels) == pytest.approx(expected_agreement)
    champion_rate = np.mean([row["class"] for row in served])
    challenger_rate = np.mean([row["probability"] >= CHALLENGER_THRESHOLD for row in served])
    difference = metric(text, "shadow_positive_rate_difference", **labels)
    assert difference == pytest.approx(challenger_rate - champion_rate)
    assert expected_agreement < 1  # the two thresholds do disagree on these rows: the check means something
    off_text = requests.get(f"{off.url}/metrics", timeout=10).text
    assert metric(off_text, "shadow_rows_total", **labels) == 0

    # the prediction log: shadow rows beside the champion's prediction, and the JSON report
    def report() -> list[dict]:
        return requests.get(f"{on.url}/monitoring/shadow", headers=heads[on.url], timeout=10).json()

    wait_for(lambda: bool(report()) and report()[0]["rows"] == len(served), what="shadow rows logged")
    (entry,) = report()
    assert entry["challenger_version"] == challenger and entry["champion_version"] == champion
    assert entry["agreement_rate"] == pytest.approx(expected_agreement)
    assert entry["positive_rate_difference"] == pytest.approx(challenger_rate - champion_rate)
    assert entry["realized"] is None  # no label job yet
    logged = requests.get(f"{on.url}/monitoring/predictions", params={"limit": 1000}, headers=heads[on.url],
                          timeout=10).json()["items"]  # fmt: skip
    assert len(logged) == len(served) and {item["model_version"] for item in logged} == {champion}
    assert requests.get(f"{off.url}/monitoring/shadow", headers=heads[off.url], timeout=10).json() == []


def test_a_challenger_that_cannot_load_leaves_serving_untouched(shadow_registry, champion_bundle, api_server,
                                                                tmp_path):  # fmt: skip
    uri, champion, challenger = shadow_registry
    set_champion(uri, champion)
    broken = register_broken(uri)
    set_challenger(uri, broken)
    project = project_with_champion(tmp_path / "project", champion_bundle)
    on = start(api_server, uri, project, tmp_path, "on", SHADOW_ENABLED="true", SHADOW_SHARE="1")
    off = start(api_server, uri, project, tmp_path, "off")
    headers = login(on.url)
    info = requests.get(f"{on.url}/model", headers=headers, timeout=10).json()
    assert info["version"] == champion and info["challenger"] is None
    text = requests.get(f"{on.url}/metrics", timeout=10).text
    assert metric(text, "challenger_checks_total", action="rejected", model="seed") == 1
    body = {"instances": rows_to_send(20)}
    answer = requests.post(f"{on.url}/predict", json=body, headers=headers, timeout=30)
    reference = requests.post(f"{off.url}/predict", json=body, headers=login(off.url), timeout=30)
    assert answer.status_code == 200 and answer.json() == reference.json()
    assert metric(requests.get(f"{on.url}/metrics", timeout=10).text, "shadow_rows_total",
                  challenger_version=broken, champion_version=champion, model="seed") == 0  # fmt: skip

    # a loaded challenger whose alias moves to a broken version is unloaded (the alias no longer names it)
    set_challenger(uri, challenger)
    requests.post(f"{on.url}/model/reload", headers=headers, timeout=60).raise_for_status()
    assert requests.get(f"{on.url}/model", headers=headers, timeout=10).json()["challenger"]["version"] == challenger
    set_challenger(uri, broken)
    requests.post(f"{on.url}/model/reload", headers=headers, timeout=60).raise_for_status()
    assert requests.get(f"{on.url}/model", headers=headers, timeout=10).json()["challenger"] is None
    answer = requests.post(f"{on.url}/predict", json=body, headers=headers, timeout=30)
    assert answer.status_code == 200 and answer.json() == reference.json()
    set_challenger(uri, challenger)


def test_a_challenger_that_fails_to_score_is_counted_never_raised(champion_bundle):
    """A real model that loads but cannot score the contract's 28 columns (fitted on 27)."""
    rows = probe_rows(50)
    wrong = HistGradientBoostingClassifier(max_iter=5).fit(np.nan_to_num(rows[:, :27]), np.arange(len(rows)) % 2)
    failing = Served(ModelBundle(wrong, champion_bundle.metadata), SOURCE_REGISTRY, "now")
    registry = CollectorRegistry()
    metrics = ShadowMetrics(registry)
    logged = []
    scorer = ShadowScorer(lambda: failing, metrics, logged.append, share=1.0)
    probabilities = champion_bundle.predict_proba(rows)
    classes = (probabilities >= 0.5).astype(np.int8)

    async def serve() -> bool:  # as in the API: the scorer's task on the running event loop
        scorer.start_on_loop()
        try:
            scorer.submit("r1", "user", rows, "1", probabilities, classes, None)  # returns at once
            return await asyncio.get_running_loop().run_in_executor(None, scorer.flush, 10)
        finally:
            scorer.stop()

    assert asyncio.run(serve())
    dropped = registry.get_sample_value("shadow_dropped_total", {"reason": DROP_SCORE_FAILED, "model": "seed"})
    assert dropped == len(rows)
    assert logged == [] and metrics.totals.snapshot() == {}


def wait_shadow_rows(url: str, headers: dict[str, str], challenger: str, champion: str, timeout: float = 60) -> None:
    """Until GET /monitoring/shadow lists logged shadow rows of `challenger` against `champion`
    (scored and written off the request path: a fixed wait was too short under load)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        report = requests.get(f"{url}/monitoring/shadow", headers=headers, timeout=10).json()
        if any(entry["champion_version"] == champion and entry["rows"] for entry in report
               if entry["challenger_version"] == challenger):  # fmt: skip
            return
        time.sleep(0.2)
    raise AssertionError(f"no shadow rows of {challenger} vs {champion} logged within {timeout} s")


def test_promotion_through_the_api_swaps_with_zero_failed_requests(shadow_registry, champion_bundle, api_server,
                                                                   tmp_path):  # fmt: skip
    uri, champion, challenger = shadow_registry
    set_champion(uri, champion)
    set_challenger(uri, challenger)
    project = project_with_champion(tmp_path / "project", champion_bundle)
    server = start(api_server, uri, project, tmp_path, "state", SHADOW_ENABLED="true", SHADOW_SHARE="1")
    admin = login(server.url)
    user = create_user(requests_client(server.url), admin, "analyst")
    for method, path in (("post", "/model/promote"), ("delete", "/model/challenger")):
        assert getattr(requests, method)(f"{server.url}{path}", headers=user, timeout=10).status_code == 403

    # the rule cannot judge yet (no labelled shadow rows): refused without an explicit override
    refused = requests.post(f"{server.url}/model/promote", json={}, headers=admin, timeout=30)
    assert refused.status_code == 409 and "override" in refused.json()["detail"]

    load = Load(f"{server.url}/predict", admin)
    wait_shadow_rows(server.url, admin, challenger, champion)  # the evidence the audit records
    promoted = requests.post(f"{server.url}/model/promote", json={"override": True, "reason": "test promotion"},
                             headers=admin, timeout=60)  # fmt: skip
    time.sleep(1.0)
    results = load.stop()
    assert promoted.status_code == 200, promoted.text
    body = promoted.json()
    assert body["promoted_version"] == challenger and body["previous_champion"] == champion
    assert body["rule_applied"] is False and body["override"] is True
    assert results and all(status == 200 for status, _ in results), [r for r in results if r[0] != 200][:5]
    versions = [version for _, version in results]
    assert champion in versions and challenger in versions and set(versions[-20:]) == {challenger}
    wait_version(server.url, admin, challenger)
    info = requests.get(f"{server.url}/model", headers=admin, timeout=10).json()
    assert info["version"] == challenger and info["challenger"] is None

    # the audit, in the registry: who, when, the evidence, the override
    client = mlflow.MlflowClient(uri)
    tags = client.get_model_version(MODEL_NAME, challenger).tags
    assert tags["promoted_by"] == "admin" and tags["promotion_override"] == "true"
    assert tags["promotion_reason"] == "test promotion" and tags["promotion_previous_champion"] == champion
    assert tags["promoted_at"] and '"rows"' in tags["promotion_evidence"]
    assert client.get_model_version_by_alias(MODEL_NAME, "champion").version == challenger
    assert client.get_model_version(MODEL_NAME, champion).tags["replaced_by"] == challenger
    with pytest.raises(mlflow.exceptions.MlflowException):
        client.get_model_version_by_alias(MODEL_NAME, CHALLENGER_ALIAS)
    nothing = requests.post(f"{server.url}/model/promote", json={"override": True}, headers=admin, timeout=30)
    assert nothing.status_code == 409

    # dropping a challenger: the old champion as challenger, then dropped
    set_challenger(uri, champion)
    requests.post(f"{server.url}/model/reload", headers=admin, timeout=30)
    assert requests.get(f"{server.url}/model", headers=admin, timeout=10).json()["challenger"]["version"] == champion
    dropped = requests.delete(f"{server.url}/model/challenger", headers=admin, timeout=30)
    assert dropped.status_code == 200 and dropped.json()["dropped_version"] == champion
    assert requests.get(f"{server.url}/model", headers=admin, timeout=10).json()["challenger"] is None
    assert client.get_model_version(MODEL_NAME, champion).tags["shadow_dropped_by"] == "admin"
    answer = requests.post(f"{server.url}/predict", json={"features": list(SEED_EXAMPLE)}, headers=admin, timeout=30)
    assert answer.status_code == 200 and answer.json()["model_version"] == challenger
    set_champion(uri, champion)
    set_challenger(uri, challenger)


class requests_client:  # noqa: N801 - the tiny adapter create_user needs (.post on paths) over a real server
    def __init__(self, url: str):
        self.url = url

    def post(self, path: str, **kwargs):
        return requests.post(f"{self.url}{path}", timeout=30, **kwargs)
