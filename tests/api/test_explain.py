"""?explain=true: exact TreeSHAP of the served model, checked against `shap.TreeExplainer` (the
oracle) and through a real uvicorn on the model the real pipeline trained."""

from __future__ import annotations

import math

import numpy as np
import pytest
import requests
import shap

from accidents.features import FEATURE_NAMES, SEED_EXAMPLE
from accidents.model.compiled_trees import probe_rows, with_known_categories
from accidents.model.explain import TreeShap
from accidents.model.model_store import ModelBundle
from tests.api.conftest import closed_url, login, project_with_champion, start_api

TOLERANCE = 1e-6


def _rows(explainer: TreeShap) -> np.ndarray:
    """Contract probe rows (missing values included), half of them with categories the encoder knows."""
    rows = probe_rows(count=60)
    return rows if explainer.encoding is None else with_known_categories(rows, explainer.encoding)


def test_tree_shap_equals_shap_tree_explainer(champion_bundle: ModelBundle):
    model = champion_bundle.model
    explainer = TreeShap(model)
    rows = _rows(explainer)
    trees, columns = model, rows
    if explainer.encoding is not None:
        trees, columns = model.steps[-1][1], model.steps[0][1].transform(rows)
    oracle = shap.TreeExplainer(trees)  # path-dependent TreeSHAP on the columns the trees see
    expected = np.asarray(oracle.shap_values(columns))
    ours, raw = explainer.column_shap_values(columns)
    assert ours.shape == expected.shape
    assert np.max(np.abs(ours - expected)) <= TOLERANCE
    assert abs(explainer.base_value - float(np.ravel(oracle.expected_value)[0])) <= TOLERANCE
    assert np.max(np.abs(raw - model.decision_function(rows))) <= TOLERANCE


def test_contributions_on_the_28_inputs_sum_to_the_raw_score(champion_bundle: ModelBundle):
    model = champion_bundle.model
    explainer = TreeShap(model)
    rows = _rows(explainer)
    contributions, raw = explainer.shap_values(rows)
    assert contributions.shape == (len(rows), len(FEATURE_NAMES))
    decision = model.decision_function(rows)
    assert np.max(np.abs(contributions.sum(axis=1) + explainer.base_value - decision)) <= TOLERANCE
    assert np.max(np.abs(raw - decision)) <= TOLERANCE
    if explainer.encoding is not None:
        # an encoded column's share is added to its input: mapping changes nothing else
        columns = explainer.encoding.transform(rows)
        phi, _ = explainer.column_shap_values(columns)
        for column, source in enumerate(explainer.encoding.input_columns):
            if column >= len(explainer.encoding.columns):
                continue
            raw_column = len(explainer.encoding.columns) + source
            assert np.allclose(contributions[:, source], phi[:, column] + phi[:, raw_column], atol=TOLERANCE)


@pytest.fixture(scope="module")
def explained_api(champion_bundle, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("explain")
    project = project_with_champion(tmp / "project", champion_bundle)
    server = start_api(tmp, {"ACCIDENTS_PROJECT_DIR": str(project), "STATE_DIR": str(tmp / "state"),
                             "MLFLOW_TRACKING_URI": closed_url(), "EXPLAIN_MAX_ROWS": "20"})  # fmt: skip
    yield server.url, login(server.url)
    server.stop()


def _check_row(prediction: dict, sent: list[float | None]) -> None:
    explanation = prediction["explanation"]
    contributions = explanation["contributions"]
    assert list(contributions) == list(FEATURE_NAMES)
    total = sum(contributions.values()) + explanation["base_value"]
    assert abs(total - explanation["raw_score"]) <= TOLERANCE
    probability = prediction["probability"]
    assert abs(explanation["raw_score"] - math.log(probability / (1 - probability))) <= TOLERANCE
    top = explanation["top"]
    assert len(top) == 5
    sizes = [abs(item["contribution"]) for item in top]
    assert sizes == sorted(sizes, reverse=True)
    assert sizes[0] == max(abs(value) for value in contributions.values())
    for item in top:
        assert item["contribution"] == contributions[item["feature"]]
        assert item["value"] == sent[FEATURE_NAMES.index(item["feature"])]


def test_explain_on_the_three_body_shapes(explained_api):
    url, headers = explained_api
    seed = list(SEED_EXAMPLE)
    other = [*seed[:5], None, *seed[6:]]  # victim_age missing (nullable)
    bodies = [
        ({"features": seed}, [seed]),
        (dict(zip(FEATURE_NAMES, seed, strict=True)), [seed]),
        ({"instances": [seed, dict(zip(FEATURE_NAMES, other, strict=True))]}, [seed, other]),
    ]
    for body, sent in bodies:
        plain = requests.post(f"{url}/predict", json=body, headers=headers, timeout=30)
        answer = requests.post(f"{url}/predict?explain=true", json=body, headers=headers, timeout=30)
        assert plain.status_code == answer.status_code == 200, answer.text
        assert all("explanation" not in row for row in plain.json()["predictions"])
        rows = answer.json()["predictions"]
        assert [row["probability"] for row in rows] == [row["probability"] for row in plain.json()["predictions"]]
        for prediction, values in zip(rows, sent, strict=True):
            _check_row(prediction, values)


def test_explain_batch_cap_is_a_clear_422(explained_api):
    url, headers = explained_api
    body = {"instances": [list(SEED_EXAMPLE)] * 21}
    refused = requests.post(f"{url}/predict?explain=true", json=body, headers=headers, timeout=30)
    assert refused.status_code == 422
    (problem,) = refused.json()["detail"]
    assert problem["loc"] == ["body", "instances"] and "at most 20 rows" in problem["msg"]
    assert requests.post(f"{url}/predict", json=body, headers=headers, timeout=30).status_code == 200


def test_openapi_documents_explain_and_feature_descriptions(explained_api):
    url, _ = explained_api
    schema = requests.get(f"{url}/openapi.json", timeout=30).json()
    parameters = {parameter["name"] for parameter in schema["paths"]["/predict"]["post"]["parameters"]}
    assert "explain" in parameters
    contributions = schema["components"]["schemas"]["Contributions"]["properties"]
    assert list(contributions) == list(FEATURE_NAMES)
    assert all(field.get("description") for field in contributions.values())
