"""Without data and network, the whole pipeline runs on synthetic data and says so everywhere."""

from __future__ import annotations

import json

import pytest

from accidents.config import CHAMPION_ALIAS, MODEL_NAME
from accidents.model import registry
from accidents.model.model_store import read_bundle
from tests.support.project import copy_project, start_mlflow

pytestmark = pytest.mark.slow


def test_synthetic_fallback_is_labelled_in_mlflow_and_the_model(tmp_path_factory):
    server, uri = start_mlflow(tmp_path_factory.mktemp("mlflow-synthetic"))
    try:
        project = copy_project(tmp_path_factory.mktemp("project-synthetic"), uri, max_rows=None)
        project.set_params("data", synthetic_rows=3000)
        result = project.retrain(env=project.env(BAAC_DATA_DIR="", BAAC_OFFLINE="1"))
        assert "SYNTHETIC demo data" in result.stderr
        assert json.loads((project.root / "data" / "raw" / "manifest.json").read_text())["source"] == "synthetic"
        client = registry.client(uri)
        version = client.get_model_version_by_alias(MODEL_NAME, CHAMPION_ALIAS)
        assert version.tags[registry.TAG_DATA_SOURCE] == "synthetic"
        assert client.get_run(version.run_id).data.tags["data_source"] == "synthetic"
        assert read_bundle(project.root / "models" / "champion.zip").metadata.data_source == "synthetic"
        assert json.loads((project.root / "metrics.json").read_text())["data_source"] == "synthetic"
    finally:
        server.stop()
