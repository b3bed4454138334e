"""Issue #23 item 2: a registry whose champion was trained on the real BAAC data keeps it when the
pipeline runs with no data directory and no network (a data.gouv.fr outage during a scheduled run).

One real MLflow server and one project copy: a real champion (a small slice of the real tables),
then real `dvc repro` runs as processes with BAAC_DATA_DIR empty and the download URLs pointing at
a closed 127.0.0.1 port.
"""

from __future__ import annotations

import json

import pytest
import yaml

from accidents.config import CHALLENGER_ALIAS, CHAMPION_ALIAS, ENV_FORCE_PROMOTION, MODEL_NAME
from accidents.model import registry
from accidents.pipeline import import_data
from tests.support.processes import free_port
from tests.support.project import Project, copy_project, start_mlflow

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def champion_project(tmp_path_factory, baac_dir) -> Project:
    """A real champion (version 1, data_source real) on a server of this module's own."""
    server, uri = start_mlflow(tmp_path_factory.mktemp("mlflow-offline"))
    project = copy_project(tmp_path_factory.mktemp("project-offline"), uri, max_rows=2000)
    hist = {
        **yaml.safe_load((project.root / "params.yaml").read_text())["train"]["hist_gradient_boosting"],
        "max_iter": 60,
    }  # a small model: a fast test
    project.set_params("train", hist_gradient_boosting=hist, reference_rows=500)
    project.set_params("data", synthetic_rows=2000, download={"retries": 1, "backoff_seconds": 0.1,
                                                              "timeout_seconds": 5})  # fmt: skip
    project.retrain()
    assert champion(project).tags[registry.TAG_DATA_SOURCE] == "real"
    yield project
    server.stop()


def champion(project: Project):
    return registry.client(project.tracking_uri).get_model_version_by_alias(MODEL_NAME, CHAMPION_ALIAS)


def offline(project: Project, **extra: str) -> dict[str, str]:
    """No data directory, and every data.gouv.fr address on a port nobody listens on."""
    closed = f"http://127.0.0.1:{free_port()}"
    return project.env(BAAC_DATA_DIR="", BAAC_BASE_URL=closed, BAAC_DATASET_API=f"{closed}/datasets", **extra)


def versions(project: Project) -> list[str]:
    found = registry.client(project.tracking_uri).search_model_versions(f"name='{MODEL_NAME}'")
    return sorted(version.version for version in found)


def test_scheduled_run_without_data_keeps_the_real_champion(champion_project):
    before, registered = champion(champion_project).version, versions(champion_project)
    env = offline(champion_project, ACCIDENTS_RUN_REASON="scheduled run (new_data_check)")
    result = champion_project.dvc("repro", "-f", env=env, check=False)
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "no synthetic fallback" in output and f"real champion (version {before}" in output
    assert "SYNTHETIC demo data" not in output
    assert champion(champion_project).version == before
    assert versions(champion_project) == registered  # nothing trained


def test_production_mode_refuses_synthetic_data_even_from_a_shell(champion_project):
    before = champion(champion_project).version
    result = champion_project.dvc("repro", "-f", env=offline(champion_project, ENVIRONMENT="production"), check=False)
    assert result.returncode != 0
    assert "ENVIRONMENT=production never trains on synthetic data" in result.stdout + result.stderr
    assert champion(champion_project).version == before


def test_an_unloadable_champion_stops_promotion_until_forced(champion_project):
    """It used to count as absent: any challenger replaced it. Runs before the synthetic run (file
    order), while models/challenger.zip is still the real version 1."""
    client = registry.client(champion_project.tracking_uri)
    real = champion(champion_project)
    # a second version of the same run, without the decision_threshold tag: it cannot be loaded
    logged = real.source.removeprefix("models:/")  # MLflow 3: the logged model holding the files
    broken = client.create_model_version(MODEL_NAME, real.source, real.run_id, model_id=logged,
                                         tags={registry.TAG_DATA_SOURCE: "real"}).version  # fmt: skip
    client.set_registered_model_alias(MODEL_NAME, CHAMPION_ALIAS, broken)
    result = champion_project.dvc("repro", "-f", "-s", "evaluate", check=False)
    assert result.returncode != 0
    assert f"champion v{broken} cannot be loaded" in result.stdout + result.stderr
    assert ENV_FORCE_PROMOTION in result.stdout + result.stderr
    assert champion(champion_project).version == broken
    forced = champion_project.dvc("repro", "-f", "-s", "evaluate",
                                  env=champion_project.env(**{ENV_FORCE_PROMOTION: "1"}))  # fmt: skip
    assert "PROMOTED" in forced.stdout
    assert champion(champion_project).version == real.version
    assert client.get_run(real.run_id).data.tags["promotion_forced"] == "true"


def test_the_decision_reports_its_paired_bootstrap_intervals(champion_project):
    """Issue #24 item 4 at the stage: the real version 1 against a copy of itself (same model, same
    threshold): differences of exactly zero, so `promotion.rule: interval` does not promote."""
    client = registry.client(champion_project.tracking_uri)
    real = champion(champion_project)
    tags = {registry.TAG_DATA_SOURCE: "real", registry.TAG_THRESHOLD: real.tags[registry.TAG_THRESHOLD]}
    copy = client.create_model_version(
        MODEL_NAME,
        real.source,
        real.run_id,
        tags=tags,
        model_id=real.source.removeprefix("models:/"),  # logged model
    ).version
    client.set_registered_model_alias(MODEL_NAME, CHAMPION_ALIAS, copy)
    champion_project.set_params("promotion", rule="interval", bootstrap_rounds=50)
    try:
        result = champion_project.dvc("repro", "-f", "-s", "evaluate")
    finally:
        champion_project.set_params("promotion", rule="margin", bootstrap_rounds=1000)
        client.set_registered_model_alias(MODEL_NAME, CHAMPION_ALIAS, real.version)
        registry.clear_challenger(client)
    assert "paired bootstrap 95% interval (50 rounds): roc_auc +0.0000 [+0.0000, +0.0000]" in result.stdout
    metrics = json.loads((champion_project.root / "metrics.json").read_text())
    assert (metrics["promoted"], metrics["rule"]) == (False, "interval")
    assert metrics["intervals"]["f1"] == {"difference": 0.0, "low": 0.0, "high": 0.0}
    run = client.get_run(real.run_id).data
    assert run.metrics["promotion_interval/roc_auc/low"] == 0.0 and run.tags["promotion_rule"] == "interval"


def test_a_synthetic_challenger_is_never_compared_with_nor_promoted_over_a_real_champion(champion_project):
    """A shell run may still fall back (a person reads the warning), but evaluate stops it."""
    before = champion(champion_project).version
    result = champion_project.dvc("repro", "-f", env=offline(champion_project), check=False)
    output = result.stdout + result.stderr
    assert "SYNTHETIC demo data" in output  # trained on it ...
    assert result.returncode != 0  # ... and evaluate failed loudly
    assert "never compared with, nor promoted over, a champion trained on real data" in output
    client = registry.client(champion_project.tracking_uri)
    assert champion(champion_project).version == before
    assert CHALLENGER_ALIAS not in client.get_registered_model(MODEL_NAME).aliases  # not shadowed either
    synthetic = max(versions(champion_project), key=int)
    tags = client.get_model_version(MODEL_NAME, synthetic).tags
    assert (tags[registry.TAG_DATA_SOURCE], tags["promotion"]) == ("synthetic", "rejected")
    assert "champion_test_roc_auc" not in client.get_run(client.get_model_version(MODEL_NAME, synthetic).run_id
                                                         ).data.metrics  # fmt: skip


def test_the_stage_reads_the_registry_tag_by_its_name():
    assert import_data.DATA_SOURCE_TAG == registry.TAG_DATA_SOURCE
