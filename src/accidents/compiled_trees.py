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
rows drawn from the feature contract, or it is not used.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import treelite
import treelite.gtil

from accidents.features import FEATURES, SEED_EXAMPLE

logger = logging.getLogger(__name__)

MAX_ROWS = 48  # at most this many rows go through the compiled copy (see the module docstring)
TOLERANCE = 1e-9  # largest accepted probability difference from scikit-learn on the probe rows
PROBE_ROWS = 256


class CompiledTrees:
    def __init__(self, model: treelite.Model):
        self._model = model

    def predict_proba(self, rows: np.ndarray) -> np.ndarray:
        """Probability of the severe class for each row, single-threaded like the rest of serving."""
        output = np.asarray(treelite.gtil.predict(self._model, rows, nthread=1))
        return output.reshape(len(rows), -1)[:, -1]  # (n, 1, 1) for boosting, (n, 1, 2) for forests


def compile_trees(model: Any) -> CompiledTrees | None:
    """The compiled copy of `model`, or None (with a warning) when it cannot be trusted to agree."""
    try:
        compiled = CompiledTrees(treelite.sklearn.import_model(model))
        probe = probe_rows()
        difference = float(np.max(np.abs(compiled.predict_proba(probe) - model.predict_proba(probe)[:, 1])))
    except Exception as error:  # any model treelite cannot import keeps the plain scikit-learn path
        logger.warning("no compiled copy of %s (scikit-learn serves every request): %s", type(model).__name__, error)
        return None
    if not difference <= TOLERANCE:
        logger.warning("compiled copy differs from scikit-learn by %.3g: not used", difference)
        return None
    return compiled


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
