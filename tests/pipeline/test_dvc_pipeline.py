"""DVC behaviour of the real pipeline: caching, partial reruns, failures, remote push/pull."""

from __future__ import annotations

import json
import shutil

import pytest
import yaml

from accidents.config import CHALLENGER_ALIAS, CHAMPION_ALIAS, MODEL_NAME
from accidents.model import registry
from accidents.model.model_store import read_bundle
from accidents.pipeline.evaluate import decide
from tests.support.project import copy_project, start_mlflow

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def project(tmp_path_factory, baac_dir):
    """A project of its own (own MLflow), since these tests change params, models and the registry."""
    server, uri = start_mlflow(tmp_path_factory.mktemp("mlflow-dvc"))
    project = copy_project(tmp_path_factory.mktemp("project-dvc"), uri)
    remote = tmp_path_factory.mktemp("dvc-remote")
    project.dvc("remote", "add", "--local", "--default", "localremote", str(remote))
    project.retrain()
    yield project
    server.stop()


def champion_state(project):
    client = registry.client(project.tracking_uri)
    alias = client.get_model_version_by_alias(MODEL_NAME, CHAMPION_ALIAS).version
    return alias, (project.root / "models" / "champion.zip").read_bytes()


def test_second_repro_with_nothing_changed_does_nothing(project):
    output = project.dvc("repro").stdout
    assert "Running stage" not in output
    assert "Data and pipelines are up to date" in output


def test_metrics_show_prints_auc_and_f1_overall_and_by_month(project):
    output = project.dvc("metrics", "show").stdout
    assert "challenger.roc_auc" in output and "challenger.f1" in output
    assert "2021-07.roc_auc" in output and "2021-12.positive_rate" in output


def test_plots_show_renders_the_by_month_and_calibration_plots(project):
    output = project.dvc("plots", "show", "--json").stdout
    assert "by_month.csv" in output and "calibration.csv" in output


def test_repro_runs_the_five_stages_of_the_seed(project):
    """import_data -> preprocess -> train -> evaluate -> predict, and predict's output is declared."""
    edges = project.dvc("dag", "--dot").stdout
    for upstream, downstream in [("import_data", "preprocess"), ("preprocess", "train"), ("train", "evaluate"),
                                 ("evaluate", "predict")]:  # fmt: skip
        assert f'"{upstream}" -> "{downstream}"' in edges, edges
    assert (project.root / "data" / "predictions" / "predictions.csv").is_file()


def test_hyperparameter_change_reruns_train_and_evaluate_only(project):
    before_alias, _ = champion_state(project)
    hyper = yaml.safe_load((project.root / "params.yaml").read_text())["train"]["hist_gradient_boosting"]
    project.set_params("train", hist_gradient_boosting={**hyper, "learning_rate": 0.2})
    output = project.retrain().stdout
    assert "Running stage 'train'" in output and "Running stage 'evaluate'" in output
    assert "Running stage 'import_data'" not in output and "Running stage 'preprocess'" not in output
    metrics = json.loads((project.root / "metrics.json").read_text())
    assert metrics["champion"]["version"] == before_alias
    expected, _ = decide(metrics["challenger"], metrics["champion"], 0.01)
    assert metrics["promoted"] is expected
    alias, _champion_file = champion_state(project)
    assert alias == (metrics["challenger"]["version"] if expected else before_alias)
    assert read_bundle(project.root / "models" / "champion.zip").metadata.version == alias
    assert ("PROMOTED" if expected else "NOT promoted") in output
    assert ("Running stage 'predict'" in output) is expected  # predict reruns only when the champion changed
    # a version that is not promoted becomes the shadow challenger; a promotion leaves none
    challenger = registry.client(project.tracking_uri).get_registered_model(MODEL_NAME).aliases.get(CHALLENGER_ALIAS)
    assert challenger == (None if expected else metrics["challenger"]["version"])


def test_crashing_training_leaves_the_champion_unchanged(project):
    before = champion_state(project)
    project.set_params("train", family="no_such_family")
    try:
        result = project.retrain(check=False)
        assert result.returncode != 0
        assert "no_such_family" in result.stdout + result.stderr
    finally:
        project.set_params("train", family="hist_gradient_boosting")
    assert champion_state(project) == before


def test_corrupt_challenger_is_rejected_and_the_champion_kept(project):
    before = champion_state(project)
    (project.root / "models" / "challenger.zip").write_bytes(b"PK\x03\x04 not really a model")
    # the failed train above left no outputs (DVC clears them first): evaluate's other dependency,
    # the report-time model's folder, must exist for DVC to run it
    (project.root / "models" / "report_time" / "trained").mkdir(parents=True, exist_ok=True)
    result = project.dvc("repro", "--single-item", "evaluate", check=False)
    assert result.returncode != 0
    assert "challenger model unusable, champion left unchanged" in result.stdout + result.stderr
    assert champion_state(project) == before
    project.dvc("checkout", "--force", "models/challenger.zip")  # restore from the DVC cache


def test_push_then_pull_restores_data_and_models(project):
    project.dvc("push")
    for folder in ("data/processed", "models"):
        shutil.rmtree(project.root / folder)
    shutil.rmtree(project.root / ".dvc" / "cache")
    project.dvc("pull")
    assert (project.root / "data" / "processed" / "test.csv").is_file()
    assert read_bundle(project.root / "models" / "challenger.zip").metadata.model_name == MODEL_NAME
