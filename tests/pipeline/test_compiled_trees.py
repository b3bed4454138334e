"""The compiled copy of the trees: same probabilities as scikit-learn, used only where it is faster."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline

from accidents.config import Paths
from accidents.features import FEATURE_NAMES, FEATURES, N_FEATURES
from accidents.model import compiled_trees
from accidents.model.model_store import ModelBundle, ModelMetadata, read_bundle
from accidents.model.modeling import fit_model, split_xy
from accidents.report_time.features import REPORT_FEATURES, example_row

METADATA = ModelMetadata("m", "1", "run", 0.4, "real", "2026-01-01T00:00:00+00:00", "test")


def trained_on_probe_rows(model, fill_missing: bool = False):
    x = compiled_trees.probe_rows(2000, seed=1)
    x = np.nan_to_num(x, nan=0.0) if fill_missing else x
    severe = (x[:, 0] > 5) ^ (np.random.default_rng(2).random(len(x)) < 0.2)
    return model.fit(x, severe.astype(int))


def with_missing_values(x: np.ndarray) -> np.ndarray:
    x = x.copy()
    rng = np.random.default_rng(3)
    for index, feature in enumerate(FEATURES):
        if feature.nullable:
            x[rng.random(len(x)) < 0.3, index] = np.nan
    return x


def test_real_champion_agrees_with_scikit_learn_on_the_whole_test_split(trained_project):
    bundle = read_bundle(trained_project.root / "models" / "champion.zip")
    assert bundle.compiled is not None and bundle.compiled.encoding is not None  # the target-encoding pipeline
    x, _ = split_xy(pd.read_csv(trained_project.root / "data" / "processed" / "test.csv"))
    for rows in (x, with_missing_values(x)):
        expected = bundle.model.predict_proba(rows)[:, 1]
        np.testing.assert_allclose(bundle.compiled.predict_proba(rows), expected, rtol=0, atol=1e-12)
        threshold = bundle.metadata.threshold
        assert np.array_equal(bundle.compiled.predict_proba(rows) >= threshold, expected >= threshold)


def test_real_report_time_champion_is_compiled_and_agrees_on_real_accidents(trained_project, caplog):
    """The report-time model (95 accident-level features, /v2/predict) is compiled too: its probe
    rows are built around its contract's example row, not the seed's 28 features."""
    champion = Paths(trained_project.root).report_time.champion
    with caplog.at_level(logging.WARNING, logger=compiled_trees.__name__):
        bundle = read_bundle(champion, example_row())
    assert "compiled" not in caplog.text
    assert bundle.compiled is not None and bundle.compiled.encoding is not None  # target encoding of dep, com
    test = pd.read_parquet(Paths(trained_project.root).report_time.split("test"), columns=list(REPORT_FEATURES))
    x = test.to_numpy(dtype=float)
    assert len(x) > 1000 and np.isnan(x).any()  # real 2021 accidents, with their missing values
    missing = x.copy()
    missing[np.random.default_rng(3).random(x.shape) < 0.3] = np.nan  # any report-time feature may be missing
    for rows in (x, missing):
        expected = bundle.model.predict_proba(rows)[:, 1]
        np.testing.assert_allclose(bundle.compiled.predict_proba(rows), expected, rtol=0, atol=1e-12)
    for row in x[:20]:  # one accident, as /v2/predict gets it, goes through the compiled copy
        assert bundle.uses_compiled(1)
        assert bundle.predict_proba(row[None, :])[0] == pytest.approx(bundle.model.predict_proba(row[None, :])[0, 1],
                                                                      abs=1e-12)  # fmt: skip


FAMILIES = [
    HistGradientBoostingClassifier(max_iter=30, random_state=0),
    RandomForestClassifier(n_estimators=5, random_state=0),
]


@pytest.mark.parametrize("model", FAMILIES, ids=["hist_gradient_boosting", "random_forest"])
def test_both_families_compile_and_requests_go_where_they_are_fastest(model):
    bundle = ModelBundle(trained_on_probe_rows(model), METADATA)
    assert bundle.compiled is not None
    few = with_missing_values(compiled_trees.probe_rows(compiled_trees.MAX_ROWS - 2, seed=7))
    many = compiled_trees.probe_rows(compiled_trees.MAX_ROWS + 50, seed=8)
    assert len(few) == compiled_trees.MAX_ROWS and len(many) > compiled_trees.MAX_ROWS
    assert bundle.uses_compiled(len(few)) and not bundle.uses_compiled(len(many))
    # bit-identical to the engine each size is routed to, and equal to the other within float noise
    assert np.array_equal(bundle.predict_proba(few), bundle.compiled.predict_proba(few))
    assert np.array_equal(bundle.predict_proba(many), bundle.model.predict_proba(many)[:, 1])
    np.testing.assert_allclose(bundle.predict_proba(few), bundle.model.predict_proba(few)[:, 1], atol=1e-12)


def test_a_model_treelite_cannot_import_is_served_by_scikit_learn(caplog):
    model = trained_on_probe_rows(LogisticRegression(max_iter=50), fill_missing=True)
    with caplog.at_level(logging.WARNING, logger=compiled_trees.__name__):
        bundle = ModelBundle(model, METADATA)
    assert bundle.compiled is None
    assert "no compiled copy of LogisticRegression" in caplog.text
    rows = compiled_trees.probe_rows(3, seed=4)
    rows = np.nan_to_num(rows, nan=0.0)  # LogisticRegression has no missing-value support
    assert np.array_equal(bundle.predict_proba(rows), model.predict_proba(rows)[:, 1])


def test_a_compiled_copy_that_disagrees_is_not_used(monkeypatch, caplog):
    model = trained_on_probe_rows(HistGradientBoostingClassifier(max_iter=10, random_state=0))
    # Demand less than the floating-point noise the real comparison measures (exactly 0 passes
    # any tolerance >= 0, hence a negative one): the refusal path runs on a real comparison.
    monkeypatch.setattr(compiled_trees, "TOLERANCE", -1.0)
    with caplog.at_level(logging.WARNING, logger=compiled_trees.__name__):
        bundle = ModelBundle(model, METADATA)
    assert bundle.compiled is None
    assert "differs from scikit-learn" in caplog.text


def test_probe_rows_respect_the_contract():
    rows = compiled_trees.probe_rows(500, seed=5)
    assert rows.shape == (502, N_FEATURES)
    for index, feature in enumerate(FEATURES):
        column = rows[:, index]
        present = column[~np.isnan(column)]
        assert feature.nullable or len(present) == len(column), feature.name
        assert all(feature.violation(float(value)) is None for value in present), feature.name


@pytest.mark.parametrize("family", ["hist_gradient_boosting", "random_forest"])
def test_target_encoding_pipelines_compile_with_the_encoder_and_match_exactly(family):
    """The default model is a Pipeline (target encoding of com/dep, then trees): the compiled copy
    applies a numpy copy of the encoder and must equal scikit-learn for seen and unseen codes."""
    params = {"family": family, "seed": 0, "target_encoding": ["com", "dep"],
              "hist_gradient_boosting": {"max_iter": 30}, "random_forest": {"n_estimators": 5}}  # fmt: skip
    x = compiled_trees.probe_rows(3000, seed=11)
    x[:, FEATURE_NAMES.index("com")] = np.random.default_rng(12).integers(1000, 1040, len(x))  # repeated codes
    y = ((x[:, FEATURE_NAMES.index("com")] % 3 == 0) ^ (np.random.default_rng(13).random(len(x)) < 0.2)).astype(int)
    model = fit_model(params, x[:2500], y[:2500], x[2500:], y[2500:])
    assert isinstance(model, Pipeline)
    bundle = ModelBundle(model, METADATA)
    assert bundle.compiled is not None and bundle.compiled.encoding is not None
    seen = with_missing_values(x[:40])  # codes the encoder has seen
    unseen = seen.copy()
    unseen[:, FEATURE_NAMES.index("com")] = 999_999  # a commune never seen: the encoder's default
    for rows in (seen, unseen):
        np.testing.assert_allclose(bundle.predict_proba(rows), model.predict_proba(rows)[:, 1], rtol=0, atol=1e-12)
    encoded = bundle.compiled.encoding.transform(seen)
    np.testing.assert_array_equal(encoded, model.steps[0][1].transform(seen))
