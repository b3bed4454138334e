"""POST /v2/predict (issue #25): the report-time model the real pipeline registered, served by a
real uvicorn (pandas kept out of its process) from a real MLflow registry, on real 2021 accidents
sent as reports (BAAC_DATA_DIR/2021-raw-sample: the official tables' first 65 accidents).

Input handling needs no model (validation runs before the model is looked up): those tests use
in-process apps with no registry, where a valid report answers 503."""

from __future__ import annotations

import copy
import json
import math
import os
import re
import shlex
import subprocess
import sys
import time
from datetime import UTC, date, datetime
from pathlib import Path

import numpy as np
import pytest
import requests
from sklearn.metrics import roc_auc_score

from accidents.config import CHAMPION_ALIAS, MODEL_NAME, REPORT_MODEL_NAME, Paths
from accidents.data.labelled import load_accidents, year_tables
from accidents.data.sources import TABLES
from accidents.features import ACCIDENT_ID
from accidents.model.explain import TreeShap
from accidents.model.model_store import read_bundle
from accidents.model.registry import TAG_THRESHOLD, client
from accidents.monitoring.realized import TAG_REALIZED_AUC
from accidents.pipeline.preprocess import read_official_table
from accidents.report_time.contract import OUTCOME_FIELDS, REPORT_EXAMPLE, AccidentReport
from accidents.report_time.features import REPORT_FEATURES, accident_features, example_row
from accidents.report_time.provenance import field_credit
from accidents.report_time.raw import outcomes, read_year, tables_from_official
from accidents.store.prediction_log import REPORT_TIME_MODEL, file_url, read_window
from api.serving.reports import VECTORIZED_MIN_ACCIDENTS
from tests.api.conftest import login, register, set_champion, start_api, trained_api_env
from tests.report_time.conftest import report_of
from tests.support.monitoring import run_cli, wait_for
from tests.support.project import data_dir, start_mlflow

REPO = Path(__file__).resolve().parents[2]
# The accident of the curl example in docs/report-time-model.md: a car hit a pedestrian (hospitalised).
DOC_ACCIDENT = "202100000003"


@pytest.fixture(scope="module")
def sample_tables(baac_dir):
    folder = baac_dir / "2021-raw-sample"
    return {table: read_official_table(folder / f"{table}-2021.csv") for table in TABLES}


@pytest.fixture(scope="module")
def served_state(tmp_path_factory) -> Path:
    """The served API's folder: its prediction log is <it>/state/predictions.db."""
    return tmp_path_factory.mktemp("report-serving")


@pytest.fixture(scope="module")
def served(trained_project, served_state):
    tmp = served_state
    server = start_api(tmp, trained_api_env(trained_project, tmp))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def report_champion(trained_project):
    return client(trained_project.tracking_uri).get_model_version_by_alias(REPORT_MODEL_NAME, CHAMPION_ALIAS)


@pytest.fixture(scope="module")
def pipeline_scores(trained_project, sample_tables) -> dict[str, float]:
    """Each sample accident's probability by the pipeline's path: the official tables ->
    accident_features -> the local champion copy (`evaluate` keeps it equal to the registry's)."""
    bundle = read_bundle(Paths(trained_project.root).report_time.champion, example_row())
    tables = tables_from_official(sample_tables)
    probabilities = bundle.predict_proba(accident_features(tables))
    return dict(zip(tables.accident_ids, probabilities.tolist(), strict=True))


def post(url: str, body: object, headers: dict[str, str]) -> requests.Response:
    return requests.post(f"{url}/v2/predict", json=body, headers=headers, timeout=60)


def test_one_real_accident_is_scored_by_the_registry_champion(served, report_champion, sample_tables,
                                                              pipeline_scores):  # fmt: skip
    response = post(served.url, report_of(sample_tables, DOC_ACCIDENT), login(served.url))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model_version"] == str(report_champion.version) and body["data_source"] == "real"
    assert body["threshold"] == float(report_champion.tags[TAG_THRESHOLD])
    (row,) = body["predictions"]
    assert 0.0 <= row["probability"] <= 1.0 and row["class"] == int(row["probability"] >= row["threshold"])
    assert row["model_version"] == str(report_champion.version) and row["accident_id"] == DOC_ACCIDENT
    # the request path's features are the pipeline's: the same probability as the raw tables' row
    assert row["probability"] == pytest.approx(pipeline_scores[DOC_ACCIDENT], abs=1e-12)


def logged_rows(state: Path, request_id: str, timeout: float = 20.0):
    """The prediction log's rows of one request, every model's, once the writer has written them."""
    deadline = time.monotonic() + timeout
    while True:
        frame = read_window(file_url(state / "state"), model=None)
        rows = frame[frame["request_id"] == request_id]
        if not rows.empty or time.monotonic() > deadline:
            return rows.reset_index(drop=True)
        time.sleep(0.2)


def test_v2_rows_are_logged_with_their_model_and_inputs(served, served_state, report_champion, sample_tables):
    """Issue #25: /v2/predict's rows go through /predict's log writer, model="report_time", the 95
    inputs as JSON; the seed's readers (/monitoring/predictions, /monitoring/prediction-stats) do
    not see them. (No /predict request here: test_metrics_and_ready... checks there was none.)"""
    tables = tables_from_official(sample_tables)
    expected = dict(zip(tables.accident_ids, accident_features(tables), strict=True))
    ids = list(expected)[:3]
    headers = login(served.url)
    response = post(served.url, {"accidents": [report_of(sample_tables, i) for i in ids]}, headers)
    assert response.status_code == 200, response.text
    rows = logged_rows(served_state, response.headers["x-request-id"])
    assert rows["accident_id"].tolist() == ids
    assert set(rows["model"]) == {REPORT_TIME_MODEL} and not rows["shadow"].any()
    assert set(rows["model_version"]) == {str(report_champion.version)} and set(rows["caller_role"]) == {"admin"}
    served_rows = response.json()["predictions"]
    assert np.allclose(rows["probability"], [row["probability"] for row in served_rows])
    assert rows["predicted_class"].tolist() == [row["class"] for row in served_rows]
    assert set(rows["threshold"]) == {served_rows[0]["threshold"]}
    assert rows[["place", "victim_age"]].isna().all().all()  # the seed's columns stay NULL
    for accident, text in zip(ids, rows["report_features"], strict=True):
        logged = json.loads(text)
        assert list(logged) == list(REPORT_FEATURES)
        values = np.array([np.nan if value is None else value for value in logged.values()], dtype=float)
        assert np.allclose(values, expected[accident], equal_nan=True)

    monitored = requests.get(f"{served.url}/monitoring/predictions", params={"accident_id": ids[0]},
                             headers=headers, timeout=30)  # fmt: skip
    assert monitored.status_code == 200 and monitored.json()["items"] == []
    stats = requests.get(f"{served.url}/monitoring/prediction-stats", params={"since": "2000-01-01"},
                         headers=headers, timeout=30).json()  # fmt: skip
    assert stats["rows"] == len(read_window(file_url(served_state / "state"))) == 0  # the seed's rows only


def test_a_batch_of_real_accidents_keeps_its_order_and_ids(served, sample_tables, pipeline_scores):
    ids = list(pipeline_scores)
    reports = [report_of(sample_tables, accident) for accident in ids]
    del reports[1]["accident_id"]  # optional
    response = post(served.url, {"accidents": reports}, login(served.url))
    assert response.status_code == 200, response.text
    rows = response.json()["predictions"]
    assert len(rows) == len(ids) == 65
    assert "accident_id" not in rows[1] and [row.get("accident_id") for row in rows[2:]] == ids[2:]
    np.testing.assert_allclose([row["probability"] for row in rows], list(pipeline_scores.values()), atol=1e-12)
    assert all(row["class"] == int(row["probability"] >= row["threshold"]) for row in rows)
    assert {row["class"] for row in rows} == {0, 1}  # real accidents of both kinds


def test_an_outcome_in_a_report_is_refused_naming_it(served, sample_tables):
    headers = login(served.url)
    report = report_of(sample_tables, DOC_ACCIDENT)
    report["vehicles"][0]["users"][1]["grav"] = 3  # the pedestrian's real outcome: hospitalised
    response = post(served.url, report, headers)
    assert response.status_code == 422, response.text
    (problem,) = response.json()["detail"]
    assert problem["loc"] == ["body", "vehicles", 0, "users", 1, "grav"]
    assert "outcome the model predicts" in problem["msg"] and problem["type"] == "outcome_forbidden"
    batch = {"accidents": [{**report_of(sample_tables, DOC_ACCIDENT), "severity": 1}]}
    (problem,) = post(served.url, batch, headers).json()["detail"]
    assert problem["loc"] == ["body", "accidents", 0, "severity"] and "outcome" in problem["msg"]


def test_same_auth_as_predict(served, sample_tables):
    report = report_of(sample_tables, DOC_ACCIDENT)
    assert post(served.url, report, {}).status_code == 401
    assert post(served.url, report, {"Authorization": "Bearer not-a-token"}).status_code == 401
    admin = login(served.url)
    response = requests.post(f"{served.url}/users", json={"username": "reporter", "password": "reporter-password"},
                             headers=admin, timeout=30)  # fmt: skip
    assert response.status_code == 201, response.text
    assert post(served.url, report, login(served.url, "reporter", "reporter-password")).status_code == 200


def test_metrics_and_ready_name_the_report_time_model(served, report_champion, sample_tables, trained_project):
    post(served.url, report_of(sample_tables, DOC_ACCIDENT), login(served.url))
    metrics = requests.get(f"{served.url}/metrics", timeout=10).text
    version = str(report_champion.version)
    assert re.search(rf'^report_predictions_total{{model_version="{version}",predicted_class="[01]"}} [1-9]', metrics,
                     re.M)  # fmt: skip
    assert not re.search(r"^predictions_total\{", metrics, re.M)  # the seed's counter: /predict's rows only
    assert f'report_model_info{{data_source="real",source="registry",version="{version}"}} 1.0' in metrics
    # its test AUC (evaluate), which the EstimatedAucDrop alert compares its estimates with
    run = client(trained_project.tracking_uri).get_run(report_champion.run_id)
    exported = re.search(rf'^report_model_test_auc{{version="{version}"}} (\S+)$', metrics, re.M)
    assert exported and float(exported.group(1)) == pytest.approx(run.data.metrics["test_roc_auc"])
    assert 'http_requests_total{method="POST",route="/v2/predict",status="200"}' in metrics
    assert requests.get(f"{served.url}/ready", timeout=10).json()["report_model_version"] == version


def test_the_docs_curl_example_is_a_real_accident_and_answers(served, sample_tables):
    """docs/report-time-model.md's curl line: its body is accident 202100000003 as the official
    tables hold it (report_of), and it runs verbatim against the API."""
    text = (REPO / "docs" / "report-time-model.md").read_text()
    (line,) = [line for line in text.replace("\\\n", " ").splitlines() if "/v2/predict" in line and "curl" in line]
    argv = shlex.split(line)
    assert json.loads(argv[argv.index("-d") + 1]) == report_of(sample_tables, DOC_ACCIDENT)
    url = next(arg for arg in argv if "/v2/predict" in arg).replace("localhost:8000", served.url)
    headers = {**login(served.url), "Content-Type": "application/json"}
    response = requests.post(url, data=argv[argv.index("-d") + 1], headers=headers, timeout=60)
    assert response.status_code == 200 and response.json()["predictions"][0]["accident_id"] == DOC_ACCIDENT


def test_replay_sends_real_accidents_as_reports(served, served_state, report_champion, trained_project):
    """`replay --route v2`: accidents of July 2021 from the official tables, as reports, through
    /v2/predict; each accepted one logged with its Num_Acc under the report-time model."""

    started = datetime.now(UTC)  # rows are stamped when served: earlier tests' rows may still be on their way
    env = {**os.environ, "BAAC_DATA_DIR": str(data_dir()), "ACCIDENTS_PROJECT_DIR": str(trained_project.root)}
    replay = run_cli("accidents.monitoring.replay", "--route", "v2", "--from", "2021-07-01", "--to", "2021-07-31",
                     "--limit", "60", "--source", "official", "--batch-size", "25", "--url", served.url,
                     "--no-progress", "--json", env=env)  # fmt: skip
    summary = json.loads(replay.stdout.strip().splitlines()[-1])
    assert summary["route"] == "/v2/predict" and summary["selected_rows"] == 60
    assert summary["sent_rows"] + summary["skipped_rows"] == 60 and summary["sent_rows"] >= 50
    assert summary["accepted_rows"] == summary["sent_rows"] and summary["rejected_rows"] == 0
    assert summary["model_versions"] == {str(report_champion.version): summary["sent_rows"]}

    def replayed():
        return read_window(file_url(served_state / "state"), since=started, model=REPORT_TIME_MODEL,
                           with_accident_id=True)  # fmt: skip

    wait_for(lambda: len(replayed()) == summary["sent_rows"], what="every replayed accident logged")
    rows = replayed()
    assert rows["accident_id"].is_unique and rows["accident_id"].str.startswith("2021").all()
    assert {json.loads(text)["month"] for text in rows["report_features"]} == {7.0}  # July's accidents
    refused = subprocess.run([sys.executable, "-m", "accidents.monitoring.replay", "--route", "v2", "--from",
                              "2021-07-01", "--to", "2021-07-02", "--shift", "victim_age=+10"],
                             capture_output=True, text=True, env=env, timeout=60)  # fmt: skip
    assert refused.returncode == 2 and "a report (--route v2) does not carry them" in refused.stderr


def test_the_label_job_grades_the_report_time_model_apart(served, served_state, report_champion, trained_project,
                                                          sample_tables, monkeypatch):  # fmt: skip
    """Issue #25: the label job grades /v2/predict's rows as the report-time model's (model
    "report_time", its own versions, tags on accidents-report-time), never as the seed's version
    of the same number. Oracle: each accident's latest logged probability against its outcome in
    the raw tables (report_time.raw.outcomes, the report-time model's own target), on the
    accidents the label job's source labels."""
    headers = login(served.url)
    ids = sample_tables["caracteristiques"]["Num_Acc"].tolist()
    assert post(served.url, {"accidents": [report_of(sample_tables, each) for each in ids]}, headers).status_code == 200
    log_url = file_url(served_state / "state")

    def logged():
        return read_window(log_url, model=REPORT_TIME_MODEL, with_accident_id=True)

    wait_for(lambda: set(ids) <= set(logged()["accident_id"]), what="the sample accidents logged")
    env = {**os.environ, "BAAC_DATA_DIR": str(data_dir()), "ACCIDENTS_PROJECT_DIR": str(trained_project.root)}
    run_cli("accidents.monitoring.realized", "--log-url", log_url, "--source", "official", "--tracking-uri",
            trained_project.tracking_uri, env=env)  # fmt: skip

    version = str(report_champion.version)
    graded = requests.get(f"{served.url}/monitoring/performance", params={"model": "report_time"}, headers=headers,
                          timeout=30).json()  # fmt: skip
    (overall,) = [grade for grade in graded if grade["month"] is None]
    assert (overall["model"], overall["model_version"]) == ("report_time", version)
    latest = logged().sort_values("id").drop_duplicates("accident_id", keep="last")
    monkeypatch.setenv("BAAC_DATA_DIR", str(data_dir()))
    labelled = set(load_accidents(date(2021, 1, 1), date(2021, 12, 31), "official")[0][ACCIDENT_ID])
    latest = latest[latest["accident_id"].isin(labelled)]
    truth = outcomes(read_year(year_tables(2021)), latest["accident_id"].tolist())
    assert not np.isnan(truth).any() and overall["rows_labelled"] == len(latest) >= len(ids)
    expected_auc = roc_auc_score(truth, latest["probability"])
    assert overall["roc_auc"] == pytest.approx(expected_auc, abs=1e-12)
    # the seed's grades: none (this module's API served no /predict row), and no tag on its version
    seed = requests.get(f"{served.url}/monitoring/performance", headers=headers, timeout=30).json()
    assert seed == []
    registry = client(trained_project.tracking_uri)
    assert registry.get_model_version(REPORT_MODEL_NAME, version).tags[TAG_REALIZED_AUC] == f"{expected_auc:.4f}"
    assert TAG_REALIZED_AUC not in registry.get_model_version(MODEL_NAME, version).tags


# --- ?explain=true: TreeSHAP of the 95 features, credited to the report's fields -------------------------


def test_tree_shap_of_the_report_time_model_equals_shap(trained_project, sample_tables):
    """Our numpy TreeSHAP on the 95-feature model against `shap.TreeExplainer` (the oracle) on the
    65 real accidents, and the feature contributions summing to the model's raw score."""
    import shap  # the oracle: test process only

    model = read_bundle(Paths(trained_project.root).report_time.champion, example_row()).model
    rows = accident_features(tables_from_official(sample_tables))
    explainer = TreeShap(model)
    assert explainer.n_inputs == len(REPORT_FEATURES)
    trees, columns = model.steps[-1][1], model.steps[0][1].transform(rows)
    expected = np.asarray(shap.TreeExplainer(trees).shap_values(columns))
    ours, _ = explainer.column_shap_values(columns)
    assert np.max(np.abs(ours - expected)) <= 1e-6
    contributions, raw = explainer.shap_values(rows)
    decision = model.decision_function(rows)
    assert np.max(np.abs(contributions.sum(axis=1) + explainer.base_value - decision)) <= 1e-6
    assert np.max(np.abs(raw - decision)) <= 1e-6


def test_explain_credits_the_reports_fields(served, sample_tables):
    ids = sample_tables["caracteristiques"]["Num_Acc"].tolist()[:12]
    body = {"accidents": [report_of(sample_tables, accident) for accident in ids]}
    headers = login(served.url)
    plain = requests.post(f"{served.url}/v2/predict", json=body, headers=headers, timeout=60)
    answer = requests.post(f"{served.url}/v2/predict?explain=true", json=body, headers=headers, timeout=60)
    assert plain.status_code == answer.status_code == 200, answer.text
    assert all("explanation" not in row for row in plain.json()["predictions"])
    rows = answer.json()["predictions"]
    assert [row["probability"] for row in rows] == [row["probability"] for row in plain.json()["predictions"]]
    credit = field_credit()
    for row in rows:
        explanation, probability = row["explanation"], row["probability"]
        assert abs(explanation["raw_score"] - math.log(probability / (1 - probability))) <= 1e-6
        assert list(explanation["features"]) == list(REPORT_FEATURES)
        assert list(explanation["fields"]) == list(credit.fields)
        for part in ("features", "fields"):  # both add up to the raw score
            total = sum(explanation[part].values()) + explanation["base_value"]
            assert abs(total - explanation["raw_score"]) <= 1e-6
        top = explanation["top"]
        assert len(top) == 5 and top[0]["contribution"] == max(explanation["fields"].values(), key=abs)
        assert all(item["contribution"] == explanation["fields"][item["field"]] for item in top)
        sizes = [abs(item["contribution"]) for item in top]
        assert sizes == sorted(sizes, reverse=True)
        # a field credited nothing (senc: no feature reads it) contributes exactly nothing
        assert explanation["fields"]["vehicles[].senc"] == 0.0


def test_explain_batch_cap_on_v2_is_a_clear_422(app_factory):
    capped = app_factory(explain_max_rows=2)
    headers = login(capped)
    refused = capped.post("/v2/predict?explain=true", json={"accidents": [REPORT_EXAMPLE] * 3}, headers=headers)
    (problem,) = problems(refused)
    assert problem["loc"] == ["body", "accidents"] and "at most 2 rows" in problem["msg"]
    # below the cap the request goes on (to the missing model's 503 here)
    assert capped.post("/v2/predict?explain=true", json={"accidents": [REPORT_EXAMPLE] * 2},
                       headers=headers).status_code == 503  # fmt: skip


def test_openapi_documents_v2_explanations(client):
    schema = client.get("/openapi.json").json()
    parameters = {parameter["name"] for parameter in schema["paths"]["/v2/predict"]["post"]["parameters"]}
    assert "explain" in parameters
    components = schema["components"]["schemas"]
    fields = components["ReportFieldContributions"]["properties"]
    assert list(fields) == list(field_credit().fields) and all(field["description"] for field in fields.values())
    features = components["ReportFeatureContributions"]["properties"]
    assert list(features) == list(REPORT_FEATURES)
    assert features["driver_age_max"]["description"] == (
        "computed from vehicles[].users[].an_nais (given date, vehicles[].users[].catu)"
    )


# --- no report-time model, then one: a registry of our own ---------------------------------------------


@pytest.fixture(scope="module")
def seed_only_registry(tmp_path_factory, champion_bundle):
    """A real MLflow server whose registry holds the seed's champion only."""
    process, uri = start_mlflow(tmp_path_factory.mktemp("seed-only-mlflow"))
    set_champion(uri, register(uri, champion_bundle))
    yield uri
    process.stop()


def test_without_a_report_time_model_the_api_serves_predict_and_answers_503(
    seed_only_registry, trained_project, tmp_path, sample_tables
):
    server = start_api(tmp_path, {"ACCIDENTS_PROJECT_DIR": str(tmp_path / "project"), "STATE_DIR": str(tmp_path),
                                  "MLFLOW_TRACKING_URI": seed_only_registry})  # fmt: skip
    try:
        headers = login(server.url)
        ready = requests.get(f"{server.url}/ready", timeout=10).json()
        assert ready["status"] == "ready" and ready["report_model_version"] is None
        report = report_of(sample_tables, DOC_ACCIDENT)
        response = post(server.url, report, headers)
        assert response.status_code == 503 and response.headers["Retry-After"] == "30"
        assert "no report-time model is loaded" in response.json()["detail"]
        # the pipeline registers one and makes it champion: a reload (or the poller) picks it up
        bundle = read_bundle(Paths(trained_project.root).report_time.champion, example_row())
        version = register(seed_only_registry, bundle, name=REPORT_MODEL_NAME)
        set_champion(seed_only_registry, version, name=REPORT_MODEL_NAME)
        reload = requests.post(f"{server.url}/model/reload", headers=headers, timeout=60).json()
        assert reload["check"]["action"] == "unchanged"  # the seed's champion did not move
        assert reload["report_model_check"]["action"] == "loaded"
        assert reload["report_model_check"]["current_version"] == version
        response = post(server.url, report, headers)
        assert response.status_code == 200 and response.json()["model_version"] == version
    finally:
        server.stop()


# --- input handling (in process, no model) ---------------------------------------------------------------


def problems(response) -> list[dict]:
    assert response.status_code == 422, response.text
    return response.json()["detail"]


def with_change(path: tuple, value: object) -> dict:
    report = copy.deepcopy(REPORT_EXAMPLE)
    target = report
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return report


@pytest.mark.parametrize(
    ("path", "value", "expected_loc", "expected"),
    [
        (("lum",), 9, ["lum"], "lum must be one of 1, 2, 3, 4, 5, got 9"),
        (("place", "vma"), "80", ["place", "vma"], "vma: Input should be a valid integer"),
        (("vehicles", 1, "catv"), 22, ["vehicles", 1, "catv"], "catv must be one of"),
        (("vehicles", 0, "users", 0, "actp"), "C", ["vehicles", 0, "users", 0, "actp"], "actp must be one of"),
        (("date",), "2021-13-01", ["date"], "date must be a calendar date YYYY-MM-DD in 2005..2100"),
        (("hrmn",), "25:00", ["hrmn"], "hrmn must be a time HH:MM"),
        (("dep",), "ZZ", ["dep"], "dep must be an INSEE code"),
        (("vehicles",), [], ["vehicles"], "vehicles: List should have at least 1 item"),
        (("accident_id",), "12a", ["accident_id"], "accident_id: String should match pattern"),
        (("place", "speed"), 80, ["place", "speed"], "speed: Extra inputs are not permitted"),
        (("lat",), True, ["lat"], "lat: Input should be a valid number"),
    ],
)
def test_a_value_outside_the_contract_is_a_422_naming_its_field(client, path, value, expected_loc, expected):
    (problem,) = problems(client.post("/v2/predict", json=with_change(path, value), headers=login(client)))
    assert problem["loc"] == ["body", *expected_loc] and problem["msg"].startswith(expected), problem


def test_a_missing_field_is_named(client):
    report = copy.deepcopy(REPORT_EXAMPLE)
    del report["hrmn"], report["place"]["catr"]
    detail = problems(client.post("/v2/predict", json=report, headers=login(client)))
    assert {(tuple(p["loc"]), p["msg"]) for p in detail} == {(("body", "hrmn"), "hrmn is missing"),
                                                            (("body", "place", "catr"), "catr is missing")}  # fmt: skip


@pytest.mark.parametrize(
    "body",
    [b"", b"not json", b"[]", b"1", b'"x"', b"null", b'{"accidents": "x"}', b'{"accidents": []}',
     b'{"accidents": [1]}', b'{"accidents": [{}], "x": 1}', b"{}", b'{"lat": NaN}', b"[" * 5000 + b"]" * 5000,
     json.dumps({**REPORT_EXAMPLE, "an_nais": 10**40}).encode()],
)  # fmt: skip
def test_malformed_bodies_are_a_422_never_a_500(client, body):
    response = client.post("/v2/predict", content=body, headers={**login(client), "Content-Type": "application/json"})
    assert response.status_code == 422, response.text
    assert all(problem["loc"][0] == "body" and problem["msg"] for problem in response.json()["detail"])


def test_a_valid_report_without_a_model_is_a_503_saying_so(client):
    response = client.post("/v2/predict", json=REPORT_EXAMPLE, headers=login(client))
    assert response.status_code == 503 and "no report-time model is loaded" in response.json()["detail"]


def test_batch_and_body_limits_are_predicts(app_factory, tmp_path):
    limited = app_factory(max_batch_rows=2)
    headers = login(limited)
    (problem,) = problems(limited.post("/v2/predict", json={"accidents": [REPORT_EXAMPLE] * 3}, headers=headers))
    assert problem == {"loc": ["body", "accidents"], "msg": "batch of 3 accidents is larger than the limit of 2",
                       "type": "too_long"}  # fmt: skip
    assert limited.post("/v2/predict", json={"accidents": [REPORT_EXAMPLE] * 2}, headers=headers).status_code == 503
    small = app_factory(tmp_path / "small", max_body_bytes=1024)
    response = small.post("/v2/predict", json={"accidents": [REPORT_EXAMPLE] * 2}, headers=login(small))
    assert response.status_code == 413


def test_disabled_report_model_is_a_503_saying_so(app_factory):
    disabled = app_factory(report_model_enabled=False)
    response = disabled.post("/v2/predict", json=REPORT_EXAMPLE, headers=login(disabled))
    assert response.status_code == 503 and "REPORT_MODEL_ENABLED=false" in response.json()["detail"]


def test_an_outcome_is_refused_at_its_field_before_any_model(client):
    report = with_change(("vehicles", 1, "users", 0, "grav"), 1)
    (problem,) = problems(client.post("/v2/predict", json={"accidents": [REPORT_EXAMPLE, report]},
                                      headers=login(client)))  # fmt: skip
    assert problem["loc"] == ["body", "accidents", 1, "vehicles", 1, "users", 0, "grav"]
    assert problem["msg"].startswith("injury severity (grav) is the outcome the model predicts")


def test_a_batch_for_the_vectorized_check_names_its_problems_as_a_small_one(client):
    """From VECTORIZED_MIN_ACCIDENTS accidents on, a batch is first read by
    accidents.report_time.bodies; any problem sends it through the contract, which names each."""
    batch = [copy.deepcopy(REPORT_EXAMPLE) for _ in range(VECTORIZED_MIN_ACCIDENTS + 2)]
    batch[4]["lum"] = 9
    batch[9]["vehicles"][1]["users"][0]["grav"] = 1
    batch[6]["place"]["vma"] = "80"
    detail = problems(client.post("/v2/predict", json={"accidents": batch}, headers=login(client)))
    assert [(p["loc"], p["msg"], p["type"]) for p in detail] == [
        (["body", "accidents", 4, "lum"], "lum must be one of 1, 2, 3, 4, 5, got 9", "value_error"),
        (["body", "accidents", 6, "place", "vma"], "vma: Input should be a valid integer", "int_type"),
        (["body", "accidents", 9, "vehicles", 1, "users", 0, "grav"], OUTCOME_FIELDS["grav"], "outcome_forbidden"),
    ]
    # the same batch, valid: read, then (no model here) the 503
    valid = [copy.deepcopy(REPORT_EXAMPLE) for _ in range(VECTORIZED_MIN_ACCIDENTS + 2)]
    assert client.post("/v2/predict", json={"accidents": valid}, headers=login(client)).status_code == 503


def test_openapi_documents_the_report_contract(client):
    schema = client.get("/openapi.json").json()
    body = schema["paths"]["/v2/predict"]["post"]["requestBody"]["content"]["application/json"]
    refs = re.findall(r'"\$ref": "#/components/schemas/(\w+)"', json.dumps(body))
    assert {"AccidentReport", "ReportBatch"} <= set(refs) and "$defs" not in body["schema"]
    components = schema["components"]["schemas"]
    assert {"AccidentReport", "ReportBatch", "PlaceReport", "VehicleReport", "UserReport"} <= set(components)
    assert components["ReportBatch"]["properties"]["accidents"]["maxItems"] == 1000
    # FastAPI drops the nulls of an example; without them (defaults: unknown) it is the same report
    example = AccidentReport.model_validate(body["examples"]["one"]["value"])
    assert example == AccidentReport.model_validate(REPORT_EXAMPLE)
    answer = schema["paths"]["/v2/predict"]["post"]["responses"]["200"]["content"]["application/json"]["schema"]
    assert answer == {"$ref": "#/components/schemas/ReportPredictResponse"}
