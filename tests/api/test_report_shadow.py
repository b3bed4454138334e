"""The report-time model's shadow (issue #25): /v2/predict's rows scored by the registry's
accidents-report-time@challenger off the request path, beside the seed's shadow of /predict. Real
uvicorn servers on a real MLflow registry of their own holding the real models the pipeline trained:
each registered twice under its own name (champion v1, challenger v2 with another threshold), so
both shadows have the same (challenger 2, champion 1) pair and only the `model` label and column
tell them apart. The reports are real 2021 accidents (BAAC_DATA_DIR/2021-raw-sample)."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import requests

from accidents.config import CHALLENGER_ALIAS, REPORT_MODEL_NAME
from accidents.data.sources import TABLES
from accidents.pipeline.preprocess import read_official_table
from accidents.report_time.features import REPORT_FEATURES, accident_features
from accidents.report_time.raw import tables_from_official
from accidents.store.prediction_log import REPORT_TIME_MODEL, SEED_MODEL, file_url, read_window
from api.serving.shadow import DROP_REASONS
from tests.api.conftest import login, project_with_champion, register, set_champion
from tests.api.test_shadow import CHALLENGER_THRESHOLD, rows_to_send, set_challenger, start
from tests.report_time.conftest import report_of
from tests.support.monitoring import metric, wait_for
from tests.support.project import start_mlflow


@pytest.fixture(scope="module")
def sample_tables(baac_dir) -> dict[str, pd.DataFrame]:
    folder = baac_dir / "2021-raw-sample"
    return {table: read_official_table(folder / f"{table}-2021.csv") for table in TABLES}


@pytest.fixture(scope="module")
def reports(sample_tables) -> dict[str, dict]:
    """The 65 sample accidents as /v2/predict bodies, by accident id."""
    ids = tables_from_official(sample_tables).accident_ids
    return {accident: report_of(sample_tables, accident) for accident in ids}


@pytest.fixture(scope="module")
def registry(tmp_path_factory, champion_bundle, report_champion_bundle, sample_tables):
    """Both registered models, each with a champion (v1) and a challenger (v2). The report-time
    challenger's threshold: the median of the champion's probabilities on the sample, so the two
    disagree on a known share of it whatever the champion's own threshold is."""
    process, uri = start_mlflow(tmp_path_factory.mktemp("report-shadow-mlflow"))
    seed = register(uri, champion_bundle), register(uri, champion_bundle, threshold=CHALLENGER_THRESHOLD)
    probabilities = report_champion_bundle.predict_proba(accident_features(tables_from_official(sample_tables)))
    threshold = float(np.median(probabilities))
    report = (
        register(uri, report_champion_bundle, name=REPORT_MODEL_NAME),
        register(uri, report_champion_bundle, threshold=threshold, name=REPORT_MODEL_NAME),
    )
    set_champion(uri, seed[0])
    set_challenger(uri, seed[1])
    set_champion(uri, report[0], name=REPORT_MODEL_NAME)
    assert seed == report == ("1", "2")  # the same version numbers: only `model` separates the two shadows
    yield uri, seed, report, threshold
    process.stop()


def set_report_challenger(uri: str, version: str | None) -> None:
    client = mlflow.MlflowClient(uri)
    if version is None:
        client.delete_registered_model_alias(REPORT_MODEL_NAME, CHALLENGER_ALIAS)
    else:
        client.set_registered_model_alias(REPORT_MODEL_NAME, CHALLENGER_ALIAS, version)


def post_reports(url: str, bodies: list[dict], headers: dict[str, str]) -> list[dict]:
    response = requests.post(f"{url}/v2/predict", json={"accidents": bodies}, headers=headers, timeout=60)
    assert response.status_code == 200, response.text
    return response.json()["predictions"]


def post_rows(url: str, rows: list, headers: dict[str, str]) -> list[dict]:
    response = requests.post(f"{url}/predict", json={"instances": rows}, headers=headers, timeout=60)
    assert response.status_code == 200, response.text
    return response.json()["predictions"]


def shadow_entries(url: str, headers: dict[str, str], model: str | None = None) -> list[dict]:
    params = {} if model is None else {"model": model}
    response = requests.get(f"{url}/monitoring/shadow", params=params, headers=headers, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


def logged_rows(url: str, headers: dict[str, str], model: str | None = None) -> int:
    return sum(entry["rows"] for entry in shadow_entries(url, headers, model))


def serve(api_server, uri: str, project: Path, tmp: Path, name: str):
    server = start(api_server, uri, project, tmp, name, SHADOW_ENABLED="true", SHADOW_SHARE="1")
    return server, tmp / name  # its STATE_DIR: the prediction log is there


def test_v2_traffic_is_shadowed_by_the_report_time_challenger_apart_from_the_seeds(
    registry, champion_bundle, report_champion_bundle, reports, api_server, tmp_path
):
    uri, seed, report, threshold = registry
    set_report_challenger(uri, report[1])
    project = project_with_champion(tmp_path / "project", champion_bundle, report_champion_bundle)
    server, state = serve(api_server, uri, project, tmp_path, "on")
    headers = login(server.url)

    ids = list(reports)
    served_reports = post_reports(server.url, [reports[accident] for accident in ids], headers)
    served_rows = post_rows(server.url, rows_to_send(), headers)
    assert {row["model_version"] for row in served_reports} == {report[0]}

    report_labels = {"challenger_version": report[1], "champion_version": report[0], "model": REPORT_TIME_MODEL}
    seed_labels = {"challenger_version": seed[1], "champion_version": seed[0], "model": SEED_MODEL}

    def shadowed(labels: dict[str, str]) -> float:
        return metric(requests.get(f"{server.url}/metrics", timeout=10).text, "shadow_rows_total", **labels)

    wait_for(lambda: shadowed(report_labels) == len(served_reports), what="every report shadowed")
    wait_for(lambda: shadowed(seed_labels) == len(served_rows), what="every seed row shadowed")
    text = requests.get(f"{server.url}/metrics", timeout=10).text
    agreement = np.mean([row["class"] == int(row["probability"] >= threshold) for row in served_reports])
    assert 0 < agreement < 1  # the two thresholds do disagree on these accidents: the check means something
    assert metric(text, "shadow_agreement_rate", **report_labels) == pytest.approx(agreement)
    # the seed's shadow is unchanged: its own rows only, its own agreement
    seed_agreement = np.mean([row["class"] == int(row["probability"] >= CHALLENGER_THRESHOLD) for row in served_rows])
    assert metric(text, "shadow_rows_total", **seed_labels) == len(served_rows)
    assert metric(text, "shadow_agreement_rate", **seed_labels) == pytest.approx(seed_agreement)
    for model in (SEED_MODEL, REPORT_TIME_MODEL):
        assert metric(text, "challenger_checks_total", action="loaded", model=model) == 1
        assert all(metric(text, "shadow_dropped_total", model=model, reason=reason) == 0 for reason in DROP_REASONS)

    # the prediction log: the report-time challenger's rows under its model, with its 95 inputs
    wait_for(lambda: logged_rows(server.url, headers, REPORT_TIME_MODEL) == len(ids), what="report shadow logged")
    wait_for(lambda: logged_rows(server.url, headers) == len(served_rows), what="seed shadow logged")
    (entry,) = shadow_entries(server.url, headers, REPORT_TIME_MODEL)
    assert (entry["challenger_version"], entry["champion_version"]) == (report[1], report[0])
    assert entry["agreement_rate"] == pytest.approx(agreement) and entry["realized"] is None
    (seed_entry,) = shadow_entries(server.url, headers)  # default: the seed's, unchanged
    assert (seed_entry["challenger_version"], seed_entry["champion_version"], seed_entry["rows"]) == (
        seed[1], seed[0], len(served_rows))  # fmt: skip
    assert seed_entry["agreement_rate"] == pytest.approx(seed_agreement)

    logged = read_window(file_url(state), shadow=True, model=REPORT_TIME_MODEL)
    assert logged["accident_id"].tolist() == ids and set(logged["model"]) == {REPORT_TIME_MODEL}
    assert set(logged["model_version"]) == {report[1]} and set(logged["champion_version"]) == {report[0]}
    assert set(logged["threshold"]) == {threshold}
    assert np.allclose(logged["champion_probability"], [row["probability"] for row in served_reports])
    assert logged["champion_class"].tolist() == [row["class"] for row in served_reports]
    assert logged["predicted_class"].tolist() == [int(p >= threshold) for p in logged["probability"]]
    assert np.allclose(logged["probability"], logged["champion_probability"])  # the same model, another threshold
    assert all(list(json.loads(text)) == list(REPORT_FEATURES) for text in logged["report_features"])
    assert logged[["place", "victim_age"]].isna().all().all()  # the seed's columns stay NULL
    seed_logged = read_window(file_url(state), shadow=True)
    assert len(seed_logged) == len(served_rows) and set(seed_logged["model_version"]) == {seed[1]}
    assert read_window(file_url(state), shadow=True, model=None).shape[0] == len(served_rows) + len(ids)


def test_without_a_report_time_challenger_nothing_is_shadowed_for_it(
    registry, champion_bundle, report_champion_bundle, reports, api_server, tmp_path
):
    """No accidents-report-time@challenger: /v2/predict's rows are neither queued, nor dropped, nor
    logged as shadow rows, while the seed's shadow runs; once the alias is set, a reload loads it
    and only what is served from then on is shadowed."""
    uri, _, report, _ = registry
    set_report_challenger(uri, None)
    project = project_with_champion(tmp_path / "project", champion_bundle, report_champion_bundle)
    server, state = serve(api_server, uri, project, tmp_path, "none")
    headers = login(server.url)
    text = requests.get(f"{server.url}/metrics", timeout=10).text
    assert metric(text, "challenger_checks_total", action="no-model", model=REPORT_TIME_MODEL) == 1
    assert metric(text, "challenger_checks_total", action="loaded", model=SEED_MODEL) == 1

    ids = list(reports)
    post_reports(server.url, [reports[accident] for accident in ids], headers)
    served_rows = post_rows(server.url, rows_to_send(20), headers)
    wait_for(lambda: logged_rows(server.url, headers) == len(served_rows), what="seed shadow logged")
    assert shadow_entries(server.url, headers, REPORT_TIME_MODEL) == []

    # the challenger appears: picked up by a reload; the accidents served before it are not shadowed
    set_report_challenger(uri, report[1])
    try:
        reloaded = requests.post(f"{server.url}/model/reload", headers=headers, timeout=60).json()
        assert reloaded["report_challenger_check"]["action"] == "loaded"
        assert reloaded["report_challenger_check"]["current_version"] == report[1]
        post_reports(server.url, [reports[accident] for accident in ids[:3]], headers)
        wait_for(lambda: logged_rows(server.url, headers, REPORT_TIME_MODEL) > 0, what="report shadow logged")
    finally:
        set_report_challenger(uri, None)
    logged = read_window(file_url(state), shadow=True, model=REPORT_TIME_MODEL)
    assert logged["accident_id"].tolist() == ids[:3] and set(logged["model_version"]) == {report[1]}
    text = requests.get(f"{server.url}/metrics", timeout=10).text
    labels = {"challenger_version": report[1], "champion_version": report[0], "model": REPORT_TIME_MODEL}
    assert metric(text, "shadow_rows_total", **labels) == 3
    assert all(metric(text, "shadow_dropped_total", model=model, reason=reason) == 0
               for model in (SEED_MODEL, REPORT_TIME_MODEL) for reason in DROP_REASONS)  # fmt: skip
    assert len(read_window(file_url(state), shadow=True)) == len(served_rows)  # the seed's: untouched
