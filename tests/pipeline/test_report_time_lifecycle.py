"""The report-time model goes through the seed's lifecycle in the DVC pipeline (issue #25 item 2):
`preprocess` writes its rows with the function a request's reports go through, `train` registers
it under its own name with its validation threshold and calibration set, `evaluate` judges it
with the shared promotion rule and moves its own aliases, and `pipeline.models` selects the
models a run trains. Real `dvc repro` on the real 2021 tables (a 3,000-accident sample), real
MLflow server."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from sklearn.metrics import roc_auc_score

from accidents.config import CHALLENGER_ALIAS, CHAMPION_ALIAS, MODEL_NAME, REPORT_MODEL_NAME, Paths
from accidents.data.sources import TABLES
from accidents.features import ACCIDENT_ID
from accidents.model import reference, registry
from accidents.model.model_store import read_bundle
from accidents.model.modeling import best_threshold
from accidents.model.promotion import judge
from accidents.monitoring.estimation import CALIBRATION_ARTIFACT, check_calibration_set
from accidents.pipeline.lifecycle import report_time_line
from accidents.pipeline.preprocess import read_official_table
from accidents.report_time.contract import AccidentReport
from accidents.report_time.features import REPORT_FEATURES, accident_features, example_row, tables_from_reports
from accidents.stage import PipelineError, read_json, selected
from accidents.store import drift_results, estimates
from accidents.store.prediction_log import REPORT_TIME_MODEL, create_log_engine
from api.monitoring.writer import ServedBatch
from tests.report_time.conftest import report_of
from tests.support.project import REPO, Project, copy_project, start_mlflow


@pytest.fixture(scope="module")
def own_mlflow(tmp_path_factory) -> Iterator[str]:
    """A registry of this module's own: the session's server holds report-time versions other
    tests' pipelines registered, and the first evaluate here must find no champion."""
    process, uri = start_mlflow(tmp_path_factory.mktemp("mlflow-report-time"))
    yield uri
    process.stop()


@pytest.fixture(scope="module")
def project(tmp_path_factory, own_mlflow, baac_dir) -> Project:
    """A project copy where `dvc repro evaluate` ran once on 2021 (both models, the default)."""
    project = copy_project(tmp_path_factory.mktemp("report-time"), own_mlflow, max_rows=3000)
    project.set_params("data", years=[2021], newer_years=False)
    project.dvc("repro", "evaluate", env=project.env(OMP_NUM_THREADS="1"))
    return project


def versions(project: Project, name: str) -> list[str]:
    client = registry.client(project.tracking_uri)
    return sorted((v.version for v in client.search_model_versions(f"name='{name}'")), key=int)


def test_preprocess_writes_the_features_a_report_gets(project, baac_dir):
    """Each row of data/processed/report_time/ is what the contract path computes for the same
    accident sent as a report (built from its raw rows): one feature code path."""
    test = pd.read_parquet(project.root / "data/processed/report_time/test.parquet")
    raw = project.root / "data/raw/tables/2021"
    tables = {table: read_official_table(raw / f"{table}.csv") for table in TABLES}
    sample = test.sample(40, random_state=0)
    reports = [AccidentReport.model_validate(report_of(tables, accident)) for accident in sample[ACCIDENT_ID]]
    served = accident_features(tables_from_reports(reports))
    np.testing.assert_array_equal(sample[list(REPORT_FEATURES)].to_numpy(float), served)


def test_train_registers_the_report_time_model_with_its_validation_threshold(project, monkeypatch):
    line = report_time_line(Paths(project.root))
    trained = read_json(line.train_report)
    # models:/ downloads read the registry URI: from the environment, for this test only (a global
    # mlflow.set_registry_uri here pointed later tests' registrations at this module's server)
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", project.tracking_uri)
    client = registry.client(project.tracking_uri)
    version = client.get_model_version(REPORT_MODEL_NAME, trained["version"])
    bundle = registry.load_version(client, version, example_row())
    assert bundle.model.n_features_in_ == len(REPORT_FEATURES) == 95
    # the threshold tag is the F1-best threshold on the validation period, recomputed here
    x_val, y_val = line.xy(line.read_split("val"))
    assert float(version.tags[registry.TAG_THRESHOLD]) == best_threshold(y_val, bundle.predict_proba(x_val))
    assert version.tags[registry.TAG_DATA_SOURCE] == "real"
    assert client.get_run(version.run_id).data.tags["model"] == "report_time"
    with tempfile.TemporaryDirectory() as folder:
        calibration = pd.read_parquet(client.download_artifacts(version.run_id, CALIBRATION_ARTIFACT, folder))
    truth, probability = check_calibration_set(calibration)  # the validation period's labels and scores
    np.testing.assert_array_equal(truth, y_val)
    np.testing.assert_allclose(probability, bundle.predict_proba(x_val))
    # its own registered model: the seed's versions are another name
    assert trained["version"] in versions(project, REPORT_MODEL_NAME)
    assert client.get_model_version(MODEL_NAME, read_json(project.root / "reports/train.json")["version"])


def report_time_job(project: Project, module: str, url: str, tmp_path: Path) -> dict:
    """`module --model report_time` on the log at `url`, every logged row one window (>= 100 rows)."""
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"monitoring": {"min_window_rows": 100, "window_rows": 0}}))
    return monitoring_job(project, module, "--model", "report_time", "--log-url", url, "--params", str(params))


def monitoring_job(project: Project, module: str, *args: str) -> dict:
    """A monitoring job's CLI in the venv the DAG runs it in (.venv-monitoring: no treelite, pandas 2)."""
    python = REPO / ".venv-monitoring" / "bin" / "python"
    env = project.env(PYTHONPATH=f"{REPO / 'src'}{os.pathsep}{REPO}")
    answer = subprocess.run([str(python), "-m", module, *args], capture_output=True, text=True, env=env,
                            cwd=project.root, timeout=600, check=False)  # fmt: skip
    assert answer.returncode == 0, answer.stderr[-3000:]
    return json.loads(answer.stdout.strip().splitlines()[-1])


def log_report_time_traffic(url: str, project: Project, version: str) -> tuple[np.ndarray, np.ndarray]:
    """The test period served by `version` of the report-time model as /v2/predict logs it (inputs
    as JSON), beside newer seed rows of a seed version with the same number (not its traffic);
    the labels and served probabilities."""
    from tests.api.monitoring.test_served_model import seed_batch, write

    line = report_time_line(Paths(project.root))
    x_test, y_test = line.xy(line.read_split("test"))
    bundle = read_bundle(line.challenger, example_row())  # the trained version's bundle
    assert bundle.metadata.version == version
    probability = bundle.predict_proba(x_test)
    threshold = float(registry.client(project.tracking_uri).get_model_version(REPORT_MODEL_NAME, version)
                      .tags[registry.TAG_THRESHOLD])  # fmt: skip
    start = datetime.now(UTC) - timedelta(hours=1)
    served = ServedBatch(start, "report-req", version, "registry", "user", threshold, x_test, probability,
                         (probability >= threshold).astype(np.int8), None,
                         model=REPORT_TIME_MODEL, feature_names=REPORT_FEATURES)  # fmt: skip
    write(url, [served, seed_batch(50, version, start + timedelta(minutes=1))])
    return y_test, probability


def test_the_estimation_job_estimates_the_report_time_models_traffic(project, tmp_path):
    """`accidents estimate --model report_time`: the window is /v2/predict's rows of the served
    version only (the seed's rows of a same-numbered version stay out), estimated with that
    version's calibration set and threshold from the report-time registered model, stored as the
    report-time model's and logged to a monitoring run tagged with its registered name."""
    version = read_json(report_time_line(Paths(project.root)).train_report)["version"]
    url = f"sqlite:///{tmp_path / 'log.db'}"
    truth, probability = log_report_time_traffic(url, project, version)
    answer = report_time_job(project, "accidents.monitoring.estimation", url, tmp_path)
    estimate = answer["estimate"]
    client = registry.client(project.tracking_uri)
    tags = client.get_model_version(REPORT_MODEL_NAME, version).tags
    assert (answer["model"], answer["model_version"], answer["window_rows"]) == ("report_time", version, len(truth))
    assert estimate["threshold"] == float(tags[registry.TAG_THRESHOLD])
    line = report_time_line(Paths(project.root))
    assert estimate["calibration"]["rows"] == len(line.read_split("val"))  # its validation period
    assert estimate["predicted_positive_rate"] == pytest.approx(np.mean(probability >= estimate["threshold"]))
    assert abs(estimate["roc_auc"] - roc_auc_score(truth, probability)) < 0.1  # a 3,000-accident sample
    run = client.get_run(answer["mlflow_run_id"])
    assert (run.data.tags["model_name"], run.data.tags["model"]) == (REPORT_MODEL_NAME, "report_time")
    engine = create_log_engine(url)
    try:
        assert [row["id"] for row in estimates.recent(engine, 5, model=REPORT_TIME_MODEL)] == [answer["id"]]
        assert estimates.recent(engine, 5) == []  # nothing stored as the seed's
    finally:
        engine.dispose()


def test_train_logs_the_report_time_drift_reference_and_the_drift_job_compares_its_traffic(project, tmp_path):
    """Each report-time version's run carries its drift reference (training rows in its 95 inputs,
    their dates, its probabilities on them), and `python -m accidents.monitoring.drift --model
    report_time` (in .venv-monitoring) compares /v2/predict's logged inputs (JSON) with it: every
    input but the calendar and `com`, stored as the report-time model's, its version tagged."""
    line = report_time_line(Paths(project.root))
    version = read_json(line.train_report)["version"]
    client = registry.client(project.tracking_uri)
    run_id = client.get_model_version(REPORT_MODEL_NAME, version).run_id
    profile = reference.download(client, run_id, REPORT_FEATURES)
    assert len(profile) == min(30000, len(line.read_split("train"))) and "mois" not in profile
    bundle = read_bundle(line.challenger, example_row())
    probability = bundle.predict_proba(profile[list(REPORT_FEATURES)].to_numpy(dtype=float))
    np.testing.assert_allclose(profile[reference.PROBABILITY], probability)

    url = f"sqlite:///{tmp_path / 'log.db'}"
    truth, _ = log_report_time_traffic(url, project, version)
    answer = report_time_job(project, "accidents.monitoring.drift", url, tmp_path)
    assert (answer["model"], answer["model_version"], answer["window_rows"]) == ("report_time", version, len(truth))
    assert answer["reference_rows"] > 0 and answer["verdict"] in ("drift", "no_drift")
    assert set(answer["feature_scores"]) == set(REPORT_FEATURES) - {"month", "weekday", "com"}
    run = client.get_run(answer["report_run_id"])
    assert (run.data.tags["model_name"], run.data.tags["model"]) == (REPORT_MODEL_NAME, "report_time")
    assert client.get_model_version(REPORT_MODEL_NAME, version).tags["drift_run_id"] == answer["report_run_id"]
    engine = create_log_engine(url)
    try:
        assert [row["id"] for row in drift_results.recent(engine, 5, REPORT_TIME_MODEL)] == [answer["id"]]
        assert drift_results.recent(engine, 5) == []  # nothing stored as the seed's
    finally:
        engine.dispose()


def test_the_retrain_decision_judges_each_model_by_its_own_champion(project):
    """The monitoring DAG's decision compares each model's windows with its own champion's test AUC
    (both registered models have a version 1: the name decides)."""
    from accidents.monitoring.retrain_decision import champion_and_test_auc

    client = registry.client(project.tracking_uri)
    for model, name in (("seed", MODEL_NAME), ("report_time", REPORT_MODEL_NAME)):
        champion = client.get_model_version_by_alias(name, CHAMPION_ALIAS)
        test_auc = client.get_run(champion.run_id).data.metrics["test_roc_auc"]
        assert champion_and_test_auc(project.tracking_uri, model) == (champion.version, test_auc)


def test_evaluate_promotes_by_the_shared_rule_and_moves_its_own_aliases(project):
    line = report_time_line(Paths(project.root))
    client = registry.client(project.tracking_uri)
    first = read_json(line.metrics)
    assert first["promoted"] and first["champion"] is None  # the first model is always promoted
    champion = client.get_model_version_by_alias(REPORT_MODEL_NAME, CHAMPION_ALIAS).version
    assert champion == first["challenger"]["version"]

    project.dvc("repro", "-f", "-s", "train", env=project.env(OMP_NUM_THREADS="1"))
    project.dvc("repro", "-s", "evaluate")
    second = read_json(line.metrics)
    assert second["champion"]["version"] == champion != second["challenger"]["version"]
    scores = {key: second[key] for key in ("challenger", "champion")}
    expected = judge(second["rule"], scores["challenger"], scores["champion"], second["min_improvement"],
                     second["intervals"])  # fmt: skip
    assert (second["promoted"], second["reason"]) == expected
    holder = CHAMPION_ALIAS if second["promoted"] else CHALLENGER_ALIAS
    assert client.get_model_version_by_alias(REPORT_MODEL_NAME, holder).version == second["challenger"]["version"]
    served = client.get_model_version_by_alias(REPORT_MODEL_NAME, CHAMPION_ALIAS).version
    assert read_bundle(line.champion, example_row()).metadata.version == served


def test_selecting_only_the_seed_model_trains_only_that_one(project):
    line = report_time_line(Paths(project.root))
    seed_before, report_before = versions(project, MODEL_NAME), versions(project, REPORT_MODEL_NAME)
    champion_copy = line.champion.read_bytes()
    project.set_params("pipeline", models=["seed"])
    try:
        project.dvc("repro", "evaluate", env=project.env(OMP_NUM_THREADS="1"))
    finally:
        project.set_params("pipeline", models=["seed", "report_time"])
    assert len(versions(project, MODEL_NAME)) == len(seed_before) + 1
    assert versions(project, REPORT_MODEL_NAME) == report_before
    for folder in (line.processed, line.challenger.parent, line.metrics.parent):
        assert read_json(folder / "skipped.json")["reason"] == "not in pipeline.models"
    assert not line.challenger.exists() and not line.metrics.exists()
    assert line.champion.read_bytes() == champion_copy  # the served copy stays (a persistent output)


@pytest.mark.parametrize("models", [["report_time"], [], ["seed", "other"], "seed"])
def test_a_selection_without_the_seed_or_with_unknown_models_is_refused(models):
    with pytest.raises(PipelineError, match=r"pipeline\.models"):
        selected({"pipeline": {"models": models}})
