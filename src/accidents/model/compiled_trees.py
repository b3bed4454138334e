"""A compiled copy of the tree ensemble, for requests of a few rows.

scikit-learn scores a HistGradientBoosting model one tree at a time from Python: about 13 us
of interpreter overhead per tree, whatever the number of rows. Our champion has ~300 trees, so
one row costs ~4 ms although the arithmetic is microseconds. Treelite's GTIL walks every tree in
C++ in one call: ~0.13 ms for one row. Its per-row cost is higher than scikit-learn's vectorized
loop, so above `MAX_ROWS` rows scikit-learn is faster and stays in charge (measured crossover:
50-64 rows on these machines; both costs grow with the number of trees, so the crossover does not
depend on the model's size).

The compiled copy is built in memory from the model we already loaded with our allow-list (no
new artifact, nothing else to trust) and must reproduce scikit-learn's probabilities on probe
rows, or it is not used. The probe rows fit the model's contract, known by its example row
(`check_model`'s): the seed's 28 features are drawn from their contract domains; every model
also gets rows built from its own split points (each threshold, and the floats just below and
above it, so both sides of every comparison), its categories and missing values around the
example row. The report-time model (95 features, accidents.report_time) is probed that way.

A Pipeline (target encoding, then the trees) is compiled as its final trees plus a numpy copy of
the encoding: scikit-learn's ColumnTransformer costs ~0.5 ms per call whatever the number of
rows, more than the compiled trees; a sorted-array lookup of the encoder's own categories and
encodings gives the same matrix in microseconds. Probe rows then also carry categories the
encoder has seen, so both the known and the unknown-category paths are compared.
"""

from __future__ import annotations

import ctypes
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import treelite
from treelite.core import _LIB, _check_call
from treelite.gtil.gtil import GTILConfig
from treelite.util import typestr_to_ctypes_type, typestr_to_numpy_type

from accidents.features import FEATURES, N_FEATURES, SEED_EXAMPLE

if TYPE_CHECKING:
    from sklearn.compose import ColumnTransformer

# scikit-learn is imported where it is used, not at module import: the API imports this module
# before it keeps pandas and pyarrow out of its process (api/serving/lean_imports.py), and importing
# scikit-learn would pull them in first.

logger = logging.getLogger(__name__)

MAX_ROWS = 48  # at most this many rows go through the compiled copy (see the module docstring)
TOLERANCE = 1e-9  # largest accepted probability difference from scikit-learn on the probe rows
PROBE_ROWS = 256


class TargetEncoding:
    """numpy copy of our encoder step: TargetEncoder on some columns, then every raw column."""

    def __init__(self, encoder: ColumnTransformer):
        from sklearn.preprocessing import TargetEncoder

        names = [name for name, _, _ in encoder.transformers_ if name != "remainder"]
        if names != ["target", "raw"]:
            raise ValueError(f"unsupported encoder layout {names}")
        target = encoder.named_transformers_["target"]
        raw = encoder.named_transformers_["raw"]
        if not isinstance(target, TargetEncoder) or getattr(raw, "func", None) is not None:
            raise ValueError("unsupported encoder steps")
        self.columns = list(encoder.transformers_[0][2])
        self._raw_columns = list(encoder.transformers_[1][2])
        self.categories = [np.asarray(values, dtype=float) for values in target.categories_]
        self._encodings = [np.asarray(values, dtype=float) for values in target.encodings_]
        # what TargetEncoder gives an unseen category, and a missing value when it saw none in
        # training (categories with NaN are refused below): NaN is never found by the look-ups
        self._default = float(target.target_mean_)
        # category -> encoding per column, for single rows: a dict look-up finds a float equal to the
        # value exactly as the sorted-array search does, without a dozen numpy calls (~25 us)
        self._lookups = [dict(zip(c.tolist(), e.tolist(), strict=True)) for c, e in
                         zip(self.categories, self._encodings, strict=True)]  # fmt: skip
        if any(np.isnan(values).any() or np.any(np.diff(values) <= 0) for values in self.categories):
            raise ValueError("encoder categories are not sorted numbers without NaN")

    @property
    def input_columns(self) -> list[int]:
        """For each column of `transform`'s output, the input column it comes from."""
        return [*self.columns, *self._raw_columns]

    def transform(self, rows: np.ndarray) -> np.ndarray:
        if len(rows) == 1:
            return self._transform_row(rows[0].tolist())
        encoded = []
        for column, categories, encodings in zip(self.columns, self.categories, self._encodings, strict=True):
            values = rows[:, column]
            position = np.minimum(np.searchsorted(categories, values), len(categories) - 1)
            known = categories[position] == values
            encoded.append(np.where(known, encodings[position], self._default))
        return np.column_stack([*encoded, rows[:, self._raw_columns]])

    def _transform_row(self, values: list[float]) -> np.ndarray:
        encoded = []
        for column, lookup in zip(self.columns, self._lookups, strict=True):
            value = values[column]
            encoded.append(lookup.get(value, self._default))
        encoded += [values[column] for column in self._raw_columns]
        return np.array([encoded], dtype=float)


class CompiledTrees:
    """Calls GTIL's dense predict directly with what `treelite.gtil.predict` rebuilds per call made
    once here: its configuration (a JSON string parsed by the C++ side), the model's input and
    output types (a C call each) and the output shape per row. That was ~4 % of the API's CPU
    under load (py-spy, issue #26); `compile_trees` still compares the result with scikit-learn's."""

    def __init__(self, model: treelite.Model, encoding: TargetEncoding | None = None, float32_inputs: bool = False):
        self._model = model
        self.encoding = encoding
        # scikit-learn's decision trees (forests) compare float32 copies of the inputs with their
        # thresholds: a float64 value just above a threshold can round onto it. The compiled copy
        # rounds the same way (the split-edge probe rows catch it otherwise).
        self._float32_inputs = float32_inputs
        self._config = GTILConfig(predict_type="default", nthread=1)  # single-threaded like the rest of serving
        input_type, output_type = model.input_type, model.output_type
        self._input_dtype = typestr_to_numpy_type(input_type)
        self._input_pointer = ctypes.POINTER(typestr_to_ctypes_type(input_type))
        self._input_type = input_type.encode()
        self._output_dtype = typestr_to_numpy_type(output_type)
        self._output_pointer = ctypes.POINTER(typestr_to_ctypes_type(output_type))
        self._num_feature = model.num_feature
        self._row_shape = self._output_shape(1)[1:]  # (num_target, max_class): the same for every row count

    def predict_proba(self, rows: np.ndarray) -> np.ndarray:
        """Probability of the severe class for each row."""
        features = rows if self.encoding is None else self.encoding.transform(rows)
        if self._float32_inputs:
            features = np.asarray(features, dtype=np.float32)
        data = np.ascontiguousarray(features, dtype=self._input_dtype)
        if data.ndim != 2 or data.shape[1] != self._num_feature:
            raise ValueError(f"expected rows of {self._num_feature} features, got shape {data.shape}")
        output = np.zeros((len(data), *self._row_shape), dtype=self._output_dtype)
        _check_call(_LIB.TreeliteGTILPredict(
            self._model.handle, data.ctypes.data_as(self._input_pointer), ctypes.c_char_p(self._input_type),
            ctypes.c_uint64(len(data)), output.ctypes.data_as(self._output_pointer), self._config.handle,
        ))  # fmt: skip
        return output.reshape(len(rows), -1)[:, -1]  # (n, 1, 1) for boosting, (n, 1, 2) for forests

    def _output_shape(self, rows: int) -> tuple[int, ...]:
        pointer, ndim = ctypes.POINTER(ctypes.c_uint64)(), ctypes.c_uint64()
        _check_call(_LIB.TreeliteGTILGetOutputShape(self._model.handle, ctypes.c_uint64(rows), self._config.handle,
                                                    ctypes.byref(pointer), ctypes.byref(ndim)))  # fmt: skip
        return tuple(int(each) for each in np.ctypeslib.as_array(pointer, shape=(ndim.value,)))


def compile_trees(model: Any, example: Sequence[float] = SEED_EXAMPLE) -> CompiledTrees | None:
    """The compiled copy of `model`, or None (with a warning) when it cannot be trusted to agree.
    `example` is the model's contract example row (the seed's by default; the report-time model's
    is accidents.report_time.features.example_row()): the probe rows are as wide and built around it."""
    from sklearn.pipeline import Pipeline

    try:
        if isinstance(model, Pipeline):
            if len(model.steps) != 2:
                raise ValueError(f"a pipeline of {len(model.steps)} steps")
            encoding, trees = TargetEncoding(model.steps[0][1]), model.steps[-1][1]
        else:
            encoding, trees = None, model
        compiled = CompiledTrees(treelite.sklearn.import_model(trees), encoding,
                                 float32_inputs=hasattr(trees, "estimators_"))  # fmt: skip
        probe = contract_probe_rows(model, example, encoding)
        difference = float(np.max(np.abs(compiled.predict_proba(probe) - model.predict_proba(probe)[:, 1])))
    except Exception as error:  # any model treelite cannot import keeps the plain scikit-learn path
        logger.warning("no compiled copy of %s (scikit-learn serves every request): %s", type(model).__name__, error)
        return None
    if not difference <= TOLERANCE:
        logger.warning("compiled copy differs from scikit-learn by %.3g: not used", difference)
        return None
    return compiled


def contract_probe_rows(model: Any, example: Sequence[float], encoding: TargetEncoding | None) -> np.ndarray:
    """The rows the compiled copy must score as scikit-learn does: the seed contract's domains
    (`probe_rows`) when `example` is the seed's, and for every contract the model's split edges
    around `example` (`edge_rows`); twice when a target encoding is compiled (unseen and seen
    categories in the encoded columns)."""
    seed_contract = len(example) == N_FEATURES and np.array_equal(
        np.asarray(example, dtype=float), np.asarray(SEED_EXAMPLE, dtype=float), equal_nan=True
    )
    rows = edge_rows(model, example, encoding)
    if seed_contract:
        rows = np.vstack([probe_rows(), rows])
    return rows if encoding is None else with_known_categories(rows, encoding)


def split_values(model: Any, encoding: TargetEncoding | None, width: int) -> list[np.ndarray]:
    """For each input column, the values where the trees' decisions on it change: the numeric
    split thresholds (HistGradientBoosting: every bin edge; forests: every node's threshold) and
    the categories of categorical splits. Columns the encoding replaces by their encodings get
    only their raw-copy thresholds (their encodings are probed by `with_known_categories`)."""
    trees = model.steps[-1][1] if encoding is not None else model
    sources = encoding.input_columns if encoding is not None else list(range(width))
    found: list[list[np.ndarray]] = [[] for _ in range(width)]
    n_encoded = 0 if encoding is None else len(encoding.columns)
    mapper = getattr(trees, "_bin_mapper", None)
    if mapper is not None:  # HistGradientBoosting: bin_thresholds_ holds every possible split value
        for feature, values in enumerate(mapper.bin_thresholds_):
            if feature >= n_encoded and values is not None:
                found[sources[feature]].append(np.asarray(values, dtype=float))
    for estimator in getattr(trees, "estimators_", []):  # RandomForest: each tree's own thresholds
        tree = estimator.tree_
        for feature in range(n_encoded, len(sources)):
            found[sources[feature]].append(tree.threshold[tree.feature == feature])
    return [np.unique(np.concatenate(values)) if values else np.zeros(0) for values in found]


def edge_rows(model: Any, example: Sequence[float], encoding: TargetEncoding | None = None,
              count: int = PROBE_ROWS, seed: int = 0) -> np.ndarray:  # fmt: skip
    """The example row, the example with every value missing, and `count` rows where each value
    is the example's, missing, an unseen code (one above the column's largest split value), or
    one of the column's split values, the float just below or just above it."""
    rng = np.random.default_rng(seed)
    example_row = np.asarray(example, dtype=float)
    columns = []
    for value, edges in zip(example_row, split_values(model, encoding, len(example_row)), strict=True):
        finite = edges[np.isfinite(edges)]
        unseen = [finite.max() + 1.0] if len(finite) else []
        candidates = np.concatenate([[value, np.nan, *unseen], finite, np.nextafter(finite, -np.inf),
                                     np.nextafter(finite, np.inf)])  # fmt: skip
        column = rng.choice(candidates, size=count)
        keep = rng.random(count) < 0.3  # some values stay the example's, so rows also look like real ones
        columns.append(np.where(keep, value, column))
    return np.vstack([example_row, np.full_like(example_row, np.nan), np.column_stack(columns)])


def probe_rows(count: int = PROBE_ROWS, seed: int = 0) -> np.ndarray:
    """The seed example, the seed example with every nullable feature missing, and random rows
    from the contract's domains (some values missing where allowed)."""
    rng = np.random.default_rng(seed)
    columns = []
    for feature in FEATURES:
        if feature.codes is not None:
            column = rng.choice(sorted(feature.codes), size=count).astype(float)
        else:
            column = rng.uniform(feature.minimum, feature.maximum, size=count)
            column = np.round(column) if feature.integer else column
        if feature.nullable:
            column[rng.random(count) < 0.2] = np.nan
        columns.append(column)
    seed_row = np.asarray(SEED_EXAMPLE, dtype=float)
    missing = np.where([feature.nullable for feature in FEATURES], np.nan, seed_row)
    return np.vstack([seed_row, missing, np.column_stack(columns)])


def with_known_categories(rows: np.ndarray, encoding: TargetEncoding, seed: int = 1) -> np.ndarray:
    """`rows` twice: as given (mostly unseen codes) and with seen categories in encoded columns."""
    rng = np.random.default_rng(seed)
    known = rows.copy()
    for column, categories in zip(encoding.columns, encoding.categories, strict=True):
        known[:, column] = rng.choice(categories, size=len(rows))
    return np.vstack([rows, known])
