"""Exact TreeSHAP for our HistGradientBoosting model, over its tree arrays in numpy.

Why not `shap` at serve time: it imports pandas, numba and llvmlite (the API keeps pandas out and
its memory is a measured goal, api/serving/lean_imports.py); `shap` is the oracle of the tests instead
(tests/api/test_explain.py compares both to 1e-6).

What is computed: the path-dependent ("tree_path_dependent", `shap.TreeExplainer`'s default
without background data) Shapley values of the model's raw score (log-odds). For one tree, with
the features U met on the path to a leaf of value v, the cover share z_j of the path's branches
on feature j (training rows going that way, product over repeated splits) and o_j = 1 when the
row satisfies every split on j along the path:

    phi_i += v * (o_i - z_i) * sum_{T subset of U minus i} |T|! (|U|-|T|-1)! / |U|! * prod_T o * prod_{U-T-i} z

and the base value is the baseline plus every tree's cover-weighted mean leaf, so
base + sum(phi) equals the raw score exactly (Shapley efficiency). The sum over subsets is the
coefficient product of the polynomials prod_j (z_j + o_j t), computed for every leaf of every
tree at once with leave-one-out prefix and suffix products: a few array operations per path slot.

Derived features mapped back onto the request: the target-encoding step feeds the trees the
encodings of `com` and `dep` *and* the raw inputs (the seed contract's 28, the report-time
model's 95); the contribution of an encoded column is added to the input it encodes (so
`com`'s contribution is its raw code's plus its encoding's).
The sum is unchanged: contributions of the inputs + base value == raw score. The report-time
model's 95 inputs are further credited to the request's fields (accidents.report_time.provenance).

numpy only: no scikit-learn import (the model object is read by its attributes).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from accidents.model.compiled_trees import TargetEncoding

ROW_CHUNK = 8  # rows explained per vectorized pass: bounds the working memory (~R x leaves x depth^2)


class ExplainError(ValueError):
    """A model this explainer does not support (it then answers without explanations)."""


@dataclass(frozen=True)
class Explanation:
    base_value: float  # expected raw score (log-odds) over the training rows
    raw_score: float  # the model's log-odds for this row
    contributions: np.ndarray  # (inputs,) log-odds contribution of each model input, contract order


class TreeShap:
    """Exact path-dependent TreeSHAP of a binary HistGradientBoosting (optionally after our
    target encoding) on the model's inputs: the seed contract's 28, or the report-time model's 95."""

    def __init__(self, model: Any):
        steps = getattr(model, "steps", None)
        self.encoding: TargetEncoding | None = None
        trees = model
        if steps is not None:
            if len(steps) != 2:
                raise ExplainError(f"a pipeline of {len(steps)} steps")
            self.encoding = TargetEncoding(steps[0][1])
            trees = steps[-1][1]
        predictors = getattr(trees, "_predictors", None)
        if predictors is None or getattr(trees, "n_trees_per_iteration_", None) != 1:
            raise ExplainError(f"{type(trees).__name__} is not a binary HistGradientBoosting model")
        baseline = float(np.asarray(trees._baseline_prediction).ravel()[0])
        self.n_columns = int(trees.n_features_in_)  # columns the trees see
        # column the trees see -> request input it comes from
        if self.encoding is None:
            self.inputs = np.arange(self.n_columns)
        else:
            self.inputs = np.asarray(self.encoding.input_columns)
        self.n_inputs = int(self.inputs.max()) + 1  # the model's inputs (every one reaches the trees raw)
        leaves = [leaf for tree in predictors for leaf in _leaves(tree[0].nodes)]
        # Leaves grouped by the number of distinct columns on their path: no padding, and the
        # work per leaf is ~k^2 for its own k (not the deepest path's).
        by_length: dict[int, list[Leaf]] = {}
        for leaf in leaves:
            by_length.setdefault(len(leaf[1]), []).append(leaf)
        self.groups = [LeafGroup(group) for _, group in sorted(by_length.items())]
        self.baseline = baseline
        self.base_value = baseline + sum(group.mean_value for group in self.groups)

    def shap_values(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(contributions (n, inputs) on the model's inputs, raw scores (n,)) of rows in contract order."""
        if rows.ndim != 2 or rows.shape[1] != self.n_inputs:
            raise ValueError(f"rows must be (n, {self.n_inputs})")
        columns = rows if self.encoding is None else self.encoding.transform(rows)
        contributions = np.zeros((len(rows), self.n_inputs))
        raw = np.empty(len(rows))
        for start in range(0, len(rows), ROW_CHUNK):
            chunk = columns[start : start + ROW_CHUNK]
            phi, score = self.column_shap_values(chunk)
            for column, source in enumerate(self.inputs):
                contributions[start : start + len(chunk), source] += phi[:, column]
            raw[start : start + len(chunk)] = score
        return contributions, raw

    def column_shap_values(self, columns: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """SHAP values (n, columns the trees see) and raw scores of already-encoded rows."""
        phi = np.zeros((len(columns), self.n_columns))
        score = np.full(len(columns), self.baseline)
        for group in self.groups:
            group.add(columns, phi, score)
        return phi, score

    def explain(self, rows: np.ndarray) -> list[Explanation]:
        contributions, raw = self.shap_values(rows)
        return [Explanation(self.base_value, float(r), c) for c, r in zip(contributions, raw, strict=True)]


Leaf = tuple[float, list[tuple[int, float, float, bool, float]]]


class LeafGroup:
    """Leaves with the same number k of distinct columns on their path, as arrays (L, k)."""

    def __init__(self, leaves: list[Leaf]):
        k = len(leaves[0][1])
        self.k = k
        self.values = np.array([value for value, _ in leaves])
        paths = [path for _, path in leaves]
        self.feature = np.array([[slot[0] for slot in path] for path in paths], dtype=np.intp).reshape(-1, k)
        self.low = np.array([[slot[1] for slot in path] for path in paths], dtype=float).reshape(-1, k)
        self.high = np.array([[slot[2] for slot in path] for path in paths], dtype=float).reshape(-1, k)
        self.nan_ok = np.array([[slot[3] for slot in path] for path in paths], dtype=bool).reshape(-1, k)
        self.zero = np.array([[slot[4] for slot in path] for path in paths], dtype=float).reshape(-1, k)
        # Shapley weight of a subset of s of the k - 1 other columns
        self.weights = np.array([math.factorial(s) * math.factorial(k - s - 1) / math.factorial(k) for s in range(k)])
        # Leaving slot d out of P(t) = prod_j (z_j + o_j t) and weighting the coefficients:
        # o_d = 0: Q = P / z_d, so sum_s w_s Q_s = (sum_s w_s P_s) / z_d;
        # o_d = 1: Q_s = sum_{m > s} P_m (-z_d)^(m-s-1), so sum_s w_s Q_s = sum_m P_m G[d, m] with
        # G[d, m] = sum_{s < m} w_s (-z_d)^(m-s-1): constants of the model, computed once here.
        powers = (-self.zero)[:, :, None] ** np.arange(k + 1)[None, None, :]  # (L, k, k + 1)
        unwind = np.zeros((len(leaves), k, k + 1))
        for m in range(1, k + 1):
            for size in range(m):
                unwind[:, :, m] += self.weights[size] * powers[:, :, m - size - 1]
        self.unwind = np.ascontiguousarray(unwind.transpose(0, 2, 1))  # (L, k + 1, k)
        self.mean_value = float(np.sum(self.values * np.prod(self.zero, axis=1)))  # its share of E[f]

    def add(self, columns: np.ndarray, phi: np.ndarray, score: np.ndarray) -> None:
        """Add this group's SHAP values to phi (n, columns) and its reached leaves to score (n,)."""
        x = columns[:, self.feature]  # (n, L, k)
        with np.errstate(invalid="ignore"):
            one = np.where(np.isnan(x), self.nan_ok, (x > self.low) & (x <= self.high))
        ones = one.astype(float)
        zero = self.zero
        n, leaves, k = x.shape
        poly = np.zeros((n, leaves, k + 1))  # coefficients of P(t), every leaf at once
        poly[:, :, 0] = 1.0
        for d in range(k):
            shifted = poly[:, :, :-1] * ones[:, :, d, None]
            poly *= zero[None, :, d, None]
            poly[:, :, 1:] += shifted
        weighted_zero = (poly[:, :, :-1] @ self.weights)[:, :, None] / zero[None]
        weighted_one = np.einsum("rlm,lmd->rld", poly, self.unwind)
        terms = self.values[None, :, None] * (ones - zero[None]) * np.where(one, weighted_one, weighted_zero)
        flat = self.feature.ravel()
        for row in range(n):
            phi[row] += np.bincount(flat, terms[row].ravel(), minlength=phi.shape[1])
        # the row's leaf in each tree is the one whose every path condition holds
        score += np.all(one, axis=2) @ self.values


def _leaves(nodes: np.ndarray) -> list[Leaf]:
    """(value, path) of every leaf; path: one (column, low, high, nan_ok, zero) per distinct column
    split on the way, the row satisfying low < x <= high (or NaN when nan_ok)."""
    if np.any(nodes["is_categorical"]):
        raise ExplainError("categorical splits are not supported")
    found = []
    stack: list[tuple[int, dict[int, list[Any]]]] = [(0, {})]
    while stack:
        index, path = stack.pop()
        node = nodes[index]
        if node["is_leaf"]:
            found.append((float(node["value"]), [(column, *values) for column, values in path.items()]))
            continue
        column, threshold = int(node["feature_idx"]), float(node["num_threshold"])
        nan_left = bool(node["missing_go_to_left"])
        for child, goes_left in ((int(node["left"]), True), (int(node["right"]), False)):
            low, high, nan_ok, zero = path.get(column, (-np.inf, np.inf, True, 1.0))
            if goes_left:
                high = min(high, threshold)
            else:
                low = max(low, threshold)
            share = float(nodes[child]["count"]) / float(node["count"]) if node["count"] else 0.0
            stack.append((child, {**path, column: [low, high, nan_ok and nan_left == goes_left, zero * share]}))
    return found
