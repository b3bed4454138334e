"""The report-time model's shadow lifecycle, as the seed's (issue #25): the label job grades its
shadow pairs apart from the seed's, GET /monitoring/shadow?model=report_time shows them, and POST
/model/promote?model=report_time / DELETE /model/challenger?model=report_time act on its own
registered model only. Real components: a real MLflow registry of its own holding the real models the
pipeline trained (each registered twice under its own name: champion v1, challenger v2 with another
threshold, so both models have the same (2, 1) pair and only `model` tells them apart), a real
uvicorn with the shadow on, real accidents of 2021-07..12 replayed through both routes with their
Num_Acc, and the real label job (which holds the labels and tags the intervals)."""

from __future__ import annotations

import json
import os
import shutil
from datetime import date

import mlflow
import pytest
import requests
from sklearn.metrics import f1_score, roc_auc_score

from accidents.config import CHALLENGER_ALIAS, CHAMPION_ALIAS, MODEL_NAME, REPORT_MODEL_NAME, load_params
from accidents.data.labelled import load_accidents
from accidents.features import ACCIDENT_ID, TARGET
from accidents.model.bootstrap import MIN_ROWS
from accidents.model.promotion import TAG_SHADOW_INTERVALS, decide
from accidents.store.prediction_log import REPORT_TIME_MODEL, SEED_MODEL, read_window
from tests.api.conftest import create_user, login, project_with_champion, register, set_champion
from tests.api.test_shadow import CHALLENGER_THRESHOLD, requests_client, start
from tests.monitoring.test_replay_realized import PERIOD
from tests.support.monitoring import run_cli, wait_for
from tests.support.project import REPO, data_dir, start_mlflow

pytestmark = pytest.mark.timeout(900)
LIMIT = 300  # accidents replayed through each route: over MIN_ROWS labelled rows, so intervals exist
REPORT_CHALLENGER_THRESHOLD = 0.2  # not the seed challenger's: the two pairs' F1 differ
ROUTES = {SEED_MODEL: "predict", REPORT_TIME_MODEL: "v2"}
NAMES = {SEED_MODEL: MODEL_NAME, REPORT_TIME_MODEL: REPORT_MODEL_NAME}


def aliases(uri: str, name: str) -> dict[str, str | None]:
    client = mlflow.MlflowClient(uri)
    found = {}
    for alias in (CHAMPION_ALIAS, CHALLENGER_ALIAS):
        try:
            found[alias] = client.get_model_version_by_alias(name, alias).version
        except mlflow.exceptions.MlflowException:
            found[alias] = None
    return found


def set_alias(uri: str, name: str, alias: str, version: str) -> None:
    mlflow.MlflowClient(uri).set_registered_model_alias(name, alias, version)


def version_tags(uri: str, name: str, version: str) -> dict[str, str]:
    return mlflow.MlflowClient(uri).get_model_version(name, version).tags


def shadow_entries(url: str, headers: dict[str, str], model: str) -> list[dict]:
    response = requests.get(f"{url}/monitoring/shadow", params={"model": model}, headers=headers, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


def same_grades(evidence: dict, realized: dict) -> bool:
    """The promotion's evidence is that pair's realized grades (computed_at is rendered apart)."""
    fields = ("roc_auc", "f1", "precision", "recall", "rows_labelled", "rows_unlabelled")
    return evidence["job_id"] == realized["job_id"] and all(
        evidence[role][name] == realized[role][name] for role in ("challenger", "champion") for name in fields
    )


def offline_grades(log_url: str, model: str) -> dict[str, dict[str, float]]:
    """AUC/F1 of challenger and champion on `model`'s logged shadow rows joined by hand with the
    official labels: what the label job must have stored for that pair."""
    logged = read_window(log_url, shadow=True, model=model)
    frame, _ = load_accidents(date.fromisoformat(PERIOD[0]), date.fromisoformat(PERIOD[1]), "official")
    labels = frame.assign(**{ACCIDENT_ID: frame[ACCIDENT_ID].astype(str)})[[ACCIDENT_ID, TARGET]]
    joined = logged.merge(labels, left_on="accident_id", right_on=ACCIDENT_ID, how="inner")
    truth = joined[TARGET].to_numpy(dtype=int)
    return {
        "rows": {"rows_labelled": len(joined)},
        "challenger": {"roc_auc": roc_auc_score(truth, joined["probability"]),
                       "f1": f1_score(truth, joined["predicted_class"])},
        "champion": {"roc_auc": roc_auc_score(truth, joined["champion_probability"]),
                     "f1": f1_score(truth, joined["champion_class"])},
    }  # fmt: skip


@pytest.fixture
def stack(api_server, champion_bundle, report_champion_bundle, tmp_path):
    """Both registered models (champion v1, challenger v2 each) and a uvicorn shadowing both."""
    process, uri = start_mlflow(tmp_path / "mlflow")
    try:
        seed = register(uri, champion_bundle), register(uri, champion_bundle, threshold=CHALLENGER_THRESHOLD)
        report = (register(uri, report_champion_bundle, name=REPORT_MODEL_NAME),
                  register(uri, report_champion_bundle, threshold=REPORT_CHALLENGER_THRESHOLD,
                           name=REPORT_MODEL_NAME))  # fmt: skip
        assert seed == report == ("1", "2")  # the same version numbers: only `model` separates the two
        for name in NAMES.values():
            set_champion(uri, "1", name=name)
            set_alias(uri, name, CHALLENGER_ALIAS, "2")
        project = project_with_champion(tmp_path / "project", champion_bundle, report_champion_bundle)
        shutil.copy(REPO / "params.yaml", project / "params.yaml")  # the rule's margin, as in a checkout
        server = start(api_server, uri, project, tmp_path, "state", SHADOW_ENABLED="true", SHADOW_SHARE="1")
        yield server, uri, project, f"sqlite:///{tmp_path / 'state' / 'predictions.db'}"
    finally:
        process.stop()


def test_report_time_challenger_is_graded_promoted_and_dropped_apart_from_the_seeds(stack):
    server, uri, project, log_url = stack
    url, admin = server.url, login(server.url)
    env = {**os.environ, "BAAC_DATA_DIR": str(data_dir()), "ACCIDENTS_PROJECT_DIR": str(project)}
    info = requests.get(f"{url}/model", headers=admin, timeout=10).json()
    assert (info["version"], info["challenger"]["version"]) == ("1", "2")
    assert info["report_model"]["model_name"] == REPORT_MODEL_NAME and info["report_model"]["loaded"] is True
    assert (info["report_model"]["version"], info["report_model"]["challenger"]["version"]) == ("1", "2")
    assert info["report_model"]["challenger"]["threshold"] == REPORT_CHALLENGER_THRESHOLD

    # 1. the same accidents through both routes, every row shadowed by its model's challenger
    sent = {}
    for model, route in ROUTES.items():
        replayed = run_cli("accidents.monitoring.replay", "--from", PERIOD[0], "--to", PERIOD[1], "--limit",
                           str(LIMIT), "--source", "official", "--route", route, "--batch-size", "50",
                           "--concurrency", "2", "--url", url, "--no-progress", "--json", env=env)  # fmt: skip
        summary = json.loads(replayed.stdout.strip().splitlines()[-1])
        assert summary["failed_requests"] == 0 and summary["rejected_rows"] == 0, summary
        sent[model] = summary["accepted_rows"]
    assert sent[SEED_MODEL] == LIMIT and MIN_ROWS < sent[REPORT_TIME_MODEL] <= LIMIT
    for model, rows in sent.items():
        wait_for(lambda model=model, rows=rows: sum(e["rows"] for e in shadow_entries(url, admin, model)) == rows,
                 what=f"every {model} row shadowed")  # fmt: skip

    # 2. the label job: each model's pair graded on its own rows, stored and tagged under its model
    job = run_cli("accidents.monitoring.realized", "--log-url", log_url, "--source", "official", "--tracking-uri",
                  uri, env=env)  # fmt: skip
    graded = json.loads(job.stdout.strip().splitlines()[-1])
    pairs = {(g["model"], g["model_version"]) for g in graded if g["shadow_challenger"] == "2"}
    assert pairs == {(SEED_MODEL, "1"), (SEED_MODEL, "2"), (REPORT_TIME_MODEL, "1"), (REPORT_TIME_MODEL, "2")}
    realized, offline_of = {}, {}
    for model in ROUTES:
        (entry,) = shadow_entries(url, admin, model)
        assert (entry["challenger_version"], entry["champion_version"], entry["rows"]) == ("2", "1", sent[model])
        realized[model] = entry["realized"]
        offline = offline_of[model] = offline_grades(log_url, model)
        for role in ("challenger", "champion"):
            assert realized[model][role]["rows_labelled"] == offline["rows"]["rows_labelled"] > MIN_ROWS
            assert realized[model][role]["rows_labelled"] + realized[model][role]["rows_unlabelled"] == sent[model]
            for metric in ("roc_auc", "f1"):
                assert realized[model][role][metric] == pytest.approx(offline[role][metric], abs=1e-9), (model, role)
        # the paired intervals, tagged on that model's own challenger version with this job's id
        tagged = json.loads(version_tags(uri, NAMES[model], "2")[f"{TAG_SHADOW_INTERVALS}1"])
        assert tagged["job_id"] == realized[model]["job_id"] and tagged["rows"] == offline["rows"]["rows_labelled"]
        difference = offline["challenger"]["f1"] - offline["champion"]["f1"]
        assert tagged["f1"]["difference"] == pytest.approx(difference, abs=1e-9), model
    assert realized[SEED_MODEL]["challenger"]["f1"] != realized[REPORT_TIME_MODEL]["challenger"]["f1"]

    # 3. promote the report-time challenger: the rule of params.yaml judges its own evidence (its
    # realized grades, offline above); when it says no, 409 and nothing moves, and an override promotes
    margin = load_params(REPO / "params.yaml")["promotion"]["min_improvement"]
    verdict, reason = decide(offline_of[REPORT_TIME_MODEL]["challenger"], offline_of[REPORT_TIME_MODEL]["champion"],
                             margin)  # fmt: skip
    promote = {"model": REPORT_TIME_MODEL}
    promoted = requests.post(f"{url}/model/promote", params=promote, json={}, headers=admin, timeout=60)
    if not verdict:
        assert promoted.status_code == 409 and reason in promoted.json()["detail"], promoted.text
        assert aliases(uri, REPORT_MODEL_NAME) == {CHAMPION_ALIAS: "1", CHALLENGER_ALIAS: "2"}
        promoted = requests.post(f"{url}/model/promote", params=promote, headers=admin, timeout=60,
                                 json={"override": True, "reason": "test: report-time promotion"})  # fmt: skip
    assert promoted.status_code == 200, promoted.text
    body = promoted.json()
    assert (body["model"], body["model_name"], body["promoted_version"], body["previous_champion"]) == (
        REPORT_TIME_MODEL, REPORT_MODEL_NAME, "2", "1")  # fmt: skip
    assert body["rule_applied"] is True and body["rule_promotes"] is verdict and body["override"] is not verdict
    assert body["rule_reason"] == reason
    assert same_grades(body["evidence"]["realized"], realized[REPORT_TIME_MODEL])
    assert body["intervals"]["job_id"] == realized[REPORT_TIME_MODEL]["job_id"]
    assert aliases(uri, REPORT_MODEL_NAME) == {CHAMPION_ALIAS: "2", CHALLENGER_ALIAS: None}
    assert aliases(uri, MODEL_NAME) == {CHAMPION_ALIAS: "1", CHALLENGER_ALIAS: "2"}  # the seed's: untouched
    tags = version_tags(uri, REPORT_MODEL_NAME, "2")
    assert tags["promoted_by"] == "admin" and tags["promotion"] == "promoted"
    assert tags["promotion_override"] == str(not verdict).lower() and tags["promotion_rule"] == reason
    assert version_tags(uri, REPORT_MODEL_NAME, "1")["replaced_by"] == "2"
    assert "promoted_by" not in version_tags(uri, MODEL_NAME, "2")
    assert "replaced_by" not in version_tags(uri, MODEL_NAME, "1")
    # served now: /v2/predict answers with version 2 and no report-time challenger is loaded
    info = requests.get(f"{url}/model", headers=admin, timeout=10).json()
    assert (info["report_model"]["version"], info["report_model"]["challenger"]) == ("2", None)
    assert (info["version"], info["challenger"]["version"]) == ("1", "2")
    nothing = requests.post(f"{url}/model/promote", params={"model": REPORT_TIME_MODEL}, json={"override": True},
                            headers=admin, timeout=30)  # fmt: skip
    assert nothing.status_code == 409, nothing.text
    replayed = run_cli("accidents.monitoring.replay", "--from", PERIOD[0], "--to", PERIOD[1], "--limit", "5",
                       "--source", "official", "--route", "v2", "--url", url, "--no-progress", "--json",
                       env=env)  # fmt: skip
    assert set(json.loads(replayed.stdout.strip().splitlines()[-1])["model_versions"]) == {"2"}

    # 4. drop a report-time challenger (the old champion, shadowed again): its alias only
    set_alias(uri, REPORT_MODEL_NAME, CHALLENGER_ALIAS, "1")
    requests.post(f"{url}/model/reload", headers=admin, timeout=60).raise_for_status()
    assert requests.get(f"{url}/model", headers=admin, timeout=10).json()["report_model"]["challenger"]["version"] == (
        "1"
    )
    dropped = requests.delete(f"{url}/model/challenger", params={"model": REPORT_TIME_MODEL}, headers=admin,
                              timeout=30)  # fmt: skip
    assert dropped.status_code == 200, dropped.text
    assert (dropped.json()["dropped_version"], dropped.json()["model"]) == ("1", REPORT_TIME_MODEL)
    assert aliases(uri, REPORT_MODEL_NAME) == {CHAMPION_ALIAS: "2", CHALLENGER_ALIAS: None}
    assert aliases(uri, MODEL_NAME) == {CHAMPION_ALIAS: "1", CHALLENGER_ALIAS: "2"}
    assert version_tags(uri, REPORT_MODEL_NAME, "1")["shadow_dropped_by"] == "admin"
    assert "shadow_dropped_by" not in version_tags(uri, MODEL_NAME, "1")
    info = requests.get(f"{url}/model", headers=admin, timeout=10).json()
    assert info["report_model"]["challenger"] is None and info["challenger"]["version"] == "2"

    # 5. and the other way round: the seed's promotion (the default) leaves the report-time aliases alone
    set_alias(uri, REPORT_MODEL_NAME, CHALLENGER_ALIAS, "1")
    requests.post(f"{url}/model/reload", headers=admin, timeout=60).raise_for_status()
    seed = requests.post(f"{url}/model/promote", json={"override": True}, headers=admin, timeout=60)
    assert seed.status_code == 200, seed.text
    assert (seed.json()["model"], seed.json()["model_name"], seed.json()["promoted_version"]) == (
        SEED_MODEL, MODEL_NAME, "2")  # fmt: skip
    assert same_grades(seed.json()["evidence"]["realized"], realized[SEED_MODEL])
    assert aliases(uri, MODEL_NAME) == {CHAMPION_ALIAS: "2", CHALLENGER_ALIAS: None}
    assert aliases(uri, REPORT_MODEL_NAME) == {CHAMPION_ALIAS: "2", CHALLENGER_ALIAS: "1"}
    assert "replaced_by" not in version_tags(uri, REPORT_MODEL_NAME, "2")
    info = requests.get(f"{url}/model", headers=admin, timeout=10).json()
    assert (info["version"], info["challenger"]) == ("2", None)
    assert (info["report_model"]["version"], info["report_model"]["challenger"]["version"]) == ("2", "1")
    dropped = requests.delete(f"{url}/model/challenger", headers=admin, timeout=30)  # the seed's: none left
    assert dropped.status_code == 409, dropped.text
    assert aliases(uri, REPORT_MODEL_NAME) == {CHAMPION_ALIAS: "2", CHALLENGER_ALIAS: "1"}


def test_the_report_time_variants_are_admin_only_and_validate_the_model(stack):
    """Anonymous: 401; a signed-in user who is not an admin: 403, before anything is read or moved;
    an admin naming no such model: 422, never a 500. The aliases stay where they were."""
    server, uri, _, _ = stack
    url, admin = server.url, login(server.url)
    user = create_user(requests_client(url), admin, "analyst")
    before = {name: aliases(uri, name) for name in NAMES.values()}
    calls = [("post", "/model/promote", {"json": {"override": True}}), ("delete", "/model/challenger", {})]
    for method, path, extra in calls:
        for model in (REPORT_TIME_MODEL, SEED_MODEL, "nonsense"):
            call = getattr(requests, method)
            anonymous = call(f"{url}{path}", params={"model": model}, timeout=10, **extra)
            assert anonymous.status_code == 401, (path, model, anonymous.text)
            refused = call(f"{url}{path}", params={"model": model}, headers=user, timeout=10, **extra)
            assert refused.status_code == 403, (path, model, refused.text)
        wrong = getattr(requests, method)(f"{url}{path}", params={"model": "nonsense"}, headers=admin, timeout=10,
                                          **extra)  # fmt: skip
        assert wrong.status_code == 422 and wrong.json()["detail"][0]["loc"] == ["query", "model"], wrong.text
    assert {name: aliases(uri, name) for name in NAMES.values()} == before
    assert before[REPORT_MODEL_NAME] == {CHAMPION_ALIAS: "1", CHALLENGER_ALIAS: "2"}
    assert all("promoted_by" not in version_tags(uri, name, "2") for name in NAMES.values())
    assert all("shadow_dropped_by" not in version_tags(uri, name, "2") for name in NAMES.values())


def test_a_report_time_promotion_without_the_report_model_is_a_409(api_server, champion_bundle, tmp_path):
    """REPORT_MODEL_ENABLED=false: no report-time model, so no challenger of it: a clear 409."""
    process, uri = start_mlflow(tmp_path / "mlflow")
    try:
        set_champion(uri, register(uri, champion_bundle))
        project = project_with_champion(tmp_path / "project", champion_bundle)
        server = start(api_server, uri, project, tmp_path, "state", SHADOW_ENABLED="true",
                       REPORT_MODEL_ENABLED="false")  # fmt: skip
        admin = login(server.url)
        assert requests.get(f"{server.url}/model", headers=admin, timeout=10).json()["report_model"] is None
        for method, path in (("post", "/model/promote"), ("delete", "/model/challenger")):
            answer = getattr(requests, method)(f"{server.url}{path}", params={"model": REPORT_TIME_MODEL},
                                               headers=admin, timeout=10)  # fmt: skip
            assert answer.status_code == 409 and "REPORT_MODEL_ENABLED=false" in answer.json()["detail"], answer.text
    finally:
        process.stop()
