"""Model bundles: atomic writes, refusal of broken files and of types we do not trust."""

from __future__ import annotations

import os
import zipfile

import numpy as np
import pytest
import skops.io
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import FunctionTransformer

from accidents.features import N_FEATURES, SEED_EXAMPLE
from accidents.model.model_store import (
    METADATA_FILE,
    MODEL_FILE,
    ModelBundle,
    ModelLoadError,
    ModelMetadata,
    read_bundle,
    write_bundle,
)


def fitted(model, features: int = N_FEATURES):
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 100, size=(300, features))
    return model.fit(x, (x[:, 0] > 50).astype(int))


def metadata(version: str) -> ModelMetadata:
    return ModelMetadata("m", version, "run", 0.4, "real", "2026-01-01T00:00:00+00:00", "test")


@pytest.mark.parametrize("model", [HistGradientBoostingClassifier(max_iter=5), RandomForestClassifier(n_estimators=3)])
def test_round_trip(tmp_path, model):
    path = tmp_path / "champion.zip"
    write_bundle(path, ModelBundle(fitted(model), metadata("1")))
    bundle = read_bundle(path)
    assert bundle.metadata == metadata("1")
    assert 0 <= bundle.predict_proba(np.asarray([SEED_EXAMPLE]))[0] <= 1
    assert oct(path.stat().st_mode & 0o777) == oct(0o644)


def test_failed_write_keeps_the_previous_file(tmp_path):
    path = tmp_path / "champion.zip"
    write_bundle(path, ModelBundle(fitted(HistGradientBoostingClassifier(max_iter=5)), metadata("1")))
    before = path.read_bytes()
    with pytest.raises(ModelLoadError):  # wrong number of inputs: refused before anything is written
        write_bundle(path, ModelBundle(fitted(LogisticRegression(), features=5), metadata("2")))
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["champion.zip"]  # no temp file left behind
    assert read_bundle(path).metadata.version == "1"


def test_corrupt_or_truncated_files_are_refused(tmp_path):
    path = tmp_path / "champion.zip"
    write_bundle(path, ModelBundle(fitted(HistGradientBoostingClassifier(max_iter=5)), metadata("1")))
    truncated = tmp_path / "truncated.zip"
    truncated.write_bytes(path.read_bytes()[: os.path.getsize(path) // 2])
    with pytest.raises(ModelLoadError):
        read_bundle(truncated)
    with pytest.raises(ModelLoadError):
        read_bundle(tmp_path / "missing.zip")


def test_untrusted_types_inside_a_model_are_refused(tmp_path):
    """A crafted artifact cannot widen the allow-list: it lives in our code, not in the file."""
    path = tmp_path / "evil.zip"
    evil = FunctionTransformer(os.system)
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(MODEL_FILE, skops.io.dumps(evil))
        archive.writestr(METADATA_FILE, '{"model_name": "m", "version": "9", "run_id": null, "threshold": 0.5,'
                                        ' "data_source": "real", "trained_at": "", "model_family": "x"}')  # fmt: skip
    with pytest.raises(ModelLoadError, match="deserialize"):
        read_bundle(path)
