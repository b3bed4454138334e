"""The report-time model goes through the seed's lifecycle in the DVC pipeline (issue #25 item 2):
`preprocess` writes its rows with the function a request's reports go through, `train` registers
it under its own name with its validation threshold and calibration set, `evaluate` judges it
with the shared promotion rule and moves its own aliases, and `pipeline.models` selects the
models a run trains. Real `dvc repro` on the real 2021 tables (a 3,000-accident sample), real
MLflow server."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator

import numpy as np
import pandas as pd
import pytest

from accidents.config import CHALLENGER_ALIAS, CHAMPION_ALIAS, MODEL_NAME, REPORT_MODEL_NAME, Paths
from accidents.data.sources import TABLES
from accidents.features import ACCIDENT_ID
from accidents.model import registry
from accidents.model.model_store import read_bundle
from accidents.model.modeling import best_threshold
from accidents.model.promotion import judge
from accidents.monitoring.estimation import CALIBRATION_ARTIFACT, check_calibration_set
from accidents.pipeline.lifecycle import report_time_line
from accidents.pipeline.preprocess import read_official_table
from accidents.report_time.contract import AccidentReport
from accidents.report_time.features import REPORT_FEATURES, accident_features, example_row, tables_from_reports
from accidents.stage import PipelineError, read_json, selected
from tests.report_time.conftest import report_of
from tests.support.project import Project, copy_project, start_mlflow


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
