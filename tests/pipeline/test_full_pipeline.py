"""The real pipeline end to end in a project copy: DVC stages, MLflow registry, champion file."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from accidents.config import CHALLENGER_ALIAS, CHAMPION_ALIAS, EXPERIMENT_NAME, MODEL_NAME
from accidents.features import ACCIDENT_DATE, ACCIDENT_ID, FEATURE_NAMES, TARGET
from accidents.model import registry
from accidents.model.model_store import read_bundle
from tests.support.project import Project


def test_repro_registers_and_promotes_a_champion(trained_project):
    metrics = json.loads((trained_project.root / "metrics.json").read_text())
    assert metrics["promoted"] is True
    assert metrics["champion"] is None  # first model
    assert 0.75 < metrics["challenger"]["roc_auc"] <= 1.0

    client = registry.client(trained_project.tracking_uri)
    champion = client.get_model_version_by_alias(MODEL_NAME, CHAMPION_ALIAS)
    assert champion.version == metrics["challenger"]["version"]
    assert champion.tags[registry.TAG_DATA_SOURCE] == "real"
    local = read_bundle(trained_project.root / "models" / "champion.zip")
    assert local.metadata.version == champion.version
    assert local.metadata.data_source == "real"
    assert "test_roc_auc" in local.metadata.metrics
    assert CHALLENGER_ALIAS not in client.get_registered_model(MODEL_NAME).aliases  # promoted: no challenger


def test_train_logs_global_feature_importance_per_version(trained_project):
    """Mean |SHAP| per input on validation rows: a plot, a table and metrics on the version's run."""
    client = registry.client(trained_project.tracking_uri)
    champion = client.get_model_version_by_alias(MODEL_NAME, CHAMPION_ALIAS)
    artifacts = {item.path for item in client.list_artifacts(champion.run_id, "importance")}
    assert {"importance/feature_importance.png", "importance/feature_importance.csv",
            "importance/feature_importance.json"} <= artifacts  # fmt: skip
    metrics = client.get_run(champion.run_id).data.metrics
    importance = {name.removeprefix("importance_"): value for name, value in metrics.items()
                  if name.startswith("importance_")}  # fmt: skip
    assert set(importance) == set(FEATURE_NAMES)
    assert all(value >= 0 for value in importance.values()) and max(importance.values()) > 0
    table = (trained_project.root / "reports" / "plots" / "importance" / "feature_importance.csv").read_text()
    assert table.splitlines()[0] == "feature,description,importance,method"


def test_splits_are_temporal_and_keep_the_accident_id_and_date(trained_project):
    splits = {name: pd.read_csv(trained_project.root / "data" / "processed" / f"{name}.csv", dtype={ACCIDENT_ID: str})
              for name in ("train", "val", "test")}  # fmt: skip
    for split in splits.values():
        assert list(split.columns) == [ACCIDENT_ID, ACCIDENT_DATE, *FEATURE_NAMES, TARGET]
        assert split[ACCIDENT_ID].str.fullmatch(r"\d{12}").all()
        assert split[ACCIDENT_DATE].str.fullmatch(r"\d{4}-\d{2}-\d{2}").all()
    # defaults: train 2020-01 .. 2021-03, validation 2021-04 .. 06, test 2021-07 .. 12 (both official years)
    assert splits["train"][ACCIDENT_DATE].min().startswith("2020-01")
    assert splits["train"][ACCIDENT_DATE].max() < "2021-04-01" <= splits["val"][ACCIDENT_DATE].min()
    assert splits["val"][ACCIDENT_DATE].max() < "2021-07-01" <= splits["test"][ACCIDENT_DATE].min()
    assert splits["test"][ACCIDENT_DATE].max().startswith("2021-12")
    ids = [set(split[ACCIDENT_ID]) for split in splits.values()]
    assert not (ids[0] & ids[1] or ids[1] & ids[2] or ids[0] & ids[2])


def test_the_run_records_years_periods_and_reason(trained_project):
    client = registry.client(trained_project.tracking_uri)
    run = client.get_run(client.get_model_version_by_alias(MODEL_NAME, CHAMPION_ALIAS).run_id)
    assert run.data.params["data_years"] == "2020,2021"
    assert run.data.params["split"] == "temporal"
    assert run.data.params["test_period"].startswith("2021-07")
    assert run.data.tags["run_reason"] == "manual (shell)"
    assert run.data.metrics["test_by_month/2021-07/roc_auc"] > 0.5


def test_per_month_metrics_and_plots(trained_project):
    by_month = json.loads((trained_project.root / "reports" / "test_by_month.json").read_text())
    assert list(by_month) == [f"2021-{month:02d}" for month in range(7, 13)]
    for scores in by_month.values():
        assert 0.5 < scores["roc_auc"] <= 1 and 0 < scores["f1"] <= 1 and 0 < scores["positive_rate"] < 1
    plots = trained_project.root / "reports" / "plots" / "test"
    assert pd.read_csv(plots / "by_month.csv")["month"].tolist() == list(by_month)
    calibration = pd.read_csv(plots / "calibration.csv")
    assert calibration["mean_predicted"].between(0, 1).all() and len(calibration) >= 5
    assert (plots / "auc_by_month.png").stat().st_size > 0 and (plots / "calibration.png").stat().st_size > 0


def test_predict_stage_scores_the_test_period_with_the_champion(trained_project):
    predictions = pd.read_csv(trained_project.root / "data" / "predictions" / "predictions.csv",
                              dtype={ACCIDENT_ID: str})  # fmt: skip
    test = pd.read_csv(trained_project.root / "data" / "processed" / "test.csv", dtype={ACCIDENT_ID: str})
    champion = read_bundle(trained_project.root / "models" / "champion.zip")
    assert predictions[ACCIDENT_ID].tolist() == test[ACCIDENT_ID].tolist()
    assert (predictions["model_version"].astype(str) == champion.metadata.version).all()
    expected = champion.model.predict_proba(test[list(FEATURE_NAMES)].to_numpy(dtype=float))[:, 1]
    assert np.allclose(predictions["probability"], expected, atol=1e-6)
    assert (predictions["prediction"] == (predictions["probability"] >= champion.metadata.threshold)).mean() > 0.999


@pytest.mark.parametrize("model, report", [("seed", "reports/backtest.json"),
                                           ("report_time", "reports/report_time/backtest.json")])  # fmt: skip
def test_backtest_trains_at_each_cutoff_and_scores_the_next_months(trained_project, tmp_path, model, report):
    """Either model, with its own rows, fit function and files (the report-time model's rows have
    95 features: fitting it on the seed's 28 would fail, and its results would overwrite the seed's)."""
    project = Project(tmp_path, trained_project.tracking_uri)  # reports go to a copy: the shared project stays as is
    shutil.copytree(trained_project.root / "data" / "processed", tmp_path / "data" / "processed")
    shutil.copy(trained_project.root / "params.yaml", tmp_path / "params.yaml")
    output = project.run(
        str(trained_project.root / ".venv" / "bin" / "python"), "-m", "accidents.pipeline.backtest", "--model", model
    ).stdout
    written = json.loads((tmp_path / report).read_text())
    assert written["model"] == model
    result = written["cutoffs"]
    assert [row["cutoff"] for row in result] == ["2021-01-01", "2021-04-01", "2021-07-01", "2021-10-01"]
    for row in result:
        trained_until, scored_from = row["train_period"].split("..")[1], row["test_period"].split("..")[0]
        assert trained_until < row["cutoff"] <= scored_from  # validation: the 3 months in between
        assert 0.5 < row["roc_auc"] <= 1
    assert result[0]["roc_auc_gain"] is None
    for row in result[1:]:  # the gain is computed before rounding: equal to the rounded difference within 1e-4
        assert abs(row["roc_auc_gain"] - (row["roc_auc"] - row["previous_roc_auc"])) <= 1.5e-4
    assert "| cutoff |" in output and (tmp_path / report).with_suffix(".md").read_text() in output
    client = registry.client(trained_project.tracking_uri)
    experiment = client.get_experiment_by_name(EXPERIMENT_NAME).experiment_id
    runs = client.search_runs(experiment, f"tags.stage = 'backtest' and tags.model = '{model}'")
    assert runs and runs[0].data.metrics["backtest/2021-10-01/roc_auc"] == result[-1]["roc_auc"]
