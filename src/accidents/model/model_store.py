"""Model bundles: a trained model plus the facts needed to serve it, saved and loaded safely.

A bundle is one zip file (model.skops + metadata.json) written atomically, so a reader
(the API) sees either the old champion or the new one, never half a file. Models are
deserialized with skops and an allow-list defined here, in our code: a model artifact
cannot widen what it is allowed to load.

skops (and with it scikit-learn) is imported on the first dump or load, not with this module:
the API process decides which of scikit-learn's optional imports it allows before that
(api/serving/lean_imports.py).
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import threading
import zipfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from accidents.features import SEED_EXAMPLE
from accidents.model.compiled_trees import MAX_ROWS as COMPILED_MAX_ROWS
from accidents.model.compiled_trees import CompiledTrees, compile_trees
from accidents.model.explain import ExplainError, TreeShap

_EXPLAINER_LOCK = threading.Lock()

# Internal types our model families need beyond skops' defaults (HistGradientBoosting,
# RandomForest, the target-encoding Pipeline's fold splitter). Nothing else is trusted.
TRUSTED_TYPES: tuple[str, ...] = (
    "sklearn.model_selection._split.StratifiedKFold",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn.ensemble._hist_gradient_boosting.binning._BinMapper",
    "sklearn._loss.loss.HalfBinomialLoss",
    "sklearn._loss.link.LogitLink",
    "sklearn._loss.link.Interval",
    "sklearn.tree._tree.Tree",
)

MODEL_FILE = "model.skops"
METADATA_FILE = "metadata.json"


class ModelLoadError(RuntimeError):
    """A model file or registry version that cannot be used for serving."""


@dataclass(frozen=True)
class ModelMetadata:
    model_name: str
    version: str | None  # registry version; None before registration
    run_id: str | None
    threshold: float  # decision threshold tuned on validation data
    data_source: str  # "real" or "synthetic"
    trained_at: str  # ISO 8601, UTC
    model_family: str
    metrics: dict[str, float] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelMetadata:
        known = {name: data[name] for name in cls.__dataclass_fields__ if name in data}
        return cls(**known)


@dataclass(frozen=True)
class ModelBundle:
    model: Any
    metadata: ModelMetadata
    # The contract's example row (check_model's): the seed's, or the report-time model's
    # (accidents.report_time.features.example_row); the compiled copy is checked on rows around it.
    example: tuple[float, ...] = field(default=tuple(SEED_EXAMPLE), repr=False, compare=False)
    # Built from `model` on creation (about 10 ms); None when it cannot match scikit-learn.
    compiled: CompiledTrees | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "example", tuple(float(value) for value in self.example))
        object.__setattr__(self, "compiled", compile_trees(self.model, self.example))

    def explainer(self) -> TreeShap:
        """The exact TreeSHAP explainer of `model` (accidents.model.explain), built on first use (~0.2 s)
        and kept; ExplainError when the model family has none."""
        built = self.__dict__.get("_explainer")
        if built is None:
            with _EXPLAINER_LOCK:
                built = self.__dict__.get("_explainer")
                if built is None:
                    try:
                        built = TreeShap(self.model)
                    except ValueError as error:  # ExplainError, or an encoder layout TreeShap cannot read
                        built = ExplainError(str(error))
                    object.__setattr__(self, "_explainer", built)
        if isinstance(built, ExplainError):
            raise built
        return built

    def uses_compiled(self, n_rows: int) -> bool:
        return self.compiled is not None and n_rows <= COMPILED_MAX_ROWS

    def predict_proba(self, rows: np.ndarray) -> np.ndarray:
        """Probability of the severe class for each row (shape (n, width of `example`), contract order).

        A few rows go through the compiled copy (same probabilities, ~30x faster for one row),
        larger batches through scikit-learn's vectorized loop (faster there).
        """
        if self.uses_compiled(len(rows)):
            return self.compiled.predict_proba(rows)
        return self.model.predict_proba(rows)[:, 1]


def dumps_model(model: Any) -> bytes:
    import skops.io

    return skops.io.dumps(model)


def loads_model(data: bytes) -> Any:
    import skops.io

    try:
        return skops.io.loads(data, trusted=list(TRUSTED_TYPES))
    except Exception as error:  # skops raises several types for untrusted or corrupt input
        raise ModelLoadError(f"cannot deserialize model: {error}") from error


def check_model(model: Any, example: Sequence[float] = SEED_EXAMPLE) -> None:
    """Refuse a model that cannot serve its contract (wrong inputs, broken predictions): the seed's
    28 features by default, or the contract whose example row is `example` (the report-time
    model's: accidents.report_time.features.example_row)."""
    if not hasattr(model, "predict_proba"):
        raise ModelLoadError(f"{type(model).__name__} has no predict_proba")
    n_inputs, width = getattr(model, "n_features_in_", None), len(example)
    if n_inputs != width:
        raise ModelLoadError(f"model expects {n_inputs} features, the contract has {width}")
    try:
        probability = float(model.predict_proba(np.asarray([example], dtype=float))[0, 1])
    except Exception as error:
        raise ModelLoadError(f"model fails on its contract's example row: {error}") from error
    if not (math.isfinite(probability) and 0.0 <= probability <= 1.0):
        raise ModelLoadError(f"model returned an invalid probability {probability}")


def checked_bundle(model: Any, metadata: ModelMetadata, example: Sequence[float] = SEED_EXAMPLE) -> ModelBundle:
    """`model` as a bundle, once it passed `check_model` on its contract's `example` row."""
    check_model(model, example)
    return ModelBundle(model, metadata, tuple(example))


def write_bundle(path: Path, bundle: ModelBundle) -> None:
    """Write atomically: a temp file in the same folder, fsync, then rename over `path` (checked on
    the bundle's own contract example first)."""
    check_model(bundle.model, bundle.example)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.fchmod(handle, 0o644)  # readable by the serving process, which may run as another user
    try:
        with os.fdopen(handle, "wb") as raw, zipfile.ZipFile(raw, "w", zipfile.ZIP_DEFLATED) as archive:
            archive.writestr(MODEL_FILE, dumps_model(bundle.model))
            archive.writestr(METADATA_FILE, json.dumps(asdict(bundle.metadata), indent=2))
            archive.close()
            raw.flush()
            os.fsync(raw.fileno())
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def read_bundle(path: Path, example: Sequence[float] = SEED_EXAMPLE) -> ModelBundle:
    try:
        with zipfile.ZipFile(path) as archive:
            model = loads_model(archive.read(MODEL_FILE))
            metadata = ModelMetadata.from_dict(json.loads(archive.read(METADATA_FILE)))
    except ModelLoadError:
        raise
    except (OSError, KeyError, ValueError, TypeError, zipfile.BadZipFile) as error:
        raise ModelLoadError(f"cannot read model bundle {path}: {error}") from error
    return checked_bundle(model, metadata, example)


def _fsync_dir(folder: Path) -> None:
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
