"""The real pipeline end to end in a project copy: DVC stages, MLflow registry, champion file."""

from __future__ import annotations

import json

from accidents import registry
from accidents.config import CHAMPION_ALIAS, MODEL_NAME
from accidents.model_store import read_bundle


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
