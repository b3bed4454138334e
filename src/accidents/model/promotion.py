"""The promotion rule (params `promotion.min_improvement`), one definition for the pipeline's
`evaluate` stage (held-out test split) and the API's POST /model/promote (shadow evidence: both
models graded on the same labelled live rows). Plain Python: the API imports it.

Before the rule, the data-source guard (issue #23): a model trained on anything but real data is
never compared with, nor promoted over, a champion that may be real (its `data_source` tag is not
"synthetic"), whatever the margin or an override say; in production mode it is never promoted.

`promotion.rule` (params.yaml) picks the rule, `judge` applies it for both users: `margin` (the
seed's, default) or `interval` (the paired bootstrap 95 % intervals, accidents.model.bootstrap:
`evaluate` computes them on the test split, the label job on the labelled shadow rows).
"""

from __future__ import annotations

from typing import Any

COMPARED = ("roc_auc", "f1")
REAL = "real"
SYNTHETIC = "synthetic"


def source_refusal(challenger: str, champion: str | None, production: bool) -> str | None:
    """Why a challenger trained on `challenger` data must not replace a champion trained on `champion`
    data (None: no champion), or None when the promotion rule may judge them."""
    if challenger == REAL:
        return None
    if production:
        return f"the challenger was trained on {challenger} data: production mode never promotes it"
    if champion is not None and champion != SYNTHETIC:
        return (f"the challenger was trained on {challenger} data: it is never compared with, nor promoted over, "
                f"a champion trained on {champion} data")  # fmt: skip
    return None


def decide(challenger: dict[str, float], champion: dict[str, float] | None, margin: float) -> tuple[bool, str]:
    """(promote?, reason) under the promotion rule."""
    if champion is None:
        return True, "no champion yet: the first model is promoted"
    gains = {metric: challenger[metric] - champion[metric] for metric in COMPARED}
    for better, other in (("roc_auc", "f1"), ("f1", "roc_auc")):
        if gains[better] > margin and gains[other] >= -margin:
            return True, f"{better} +{gains[better]:.4f} > {margin} and {other} {gains[other]:+.4f} >= -{margin}"
    summary = ", ".join(f"{metric} {gain:+.4f}" for metric, gain in gains.items())
    return False, f"not better by more than {margin} on roc_auc or f1 without losing more on the other ({summary})"


RULES = ("margin", "interval")  # promotion.rule: the seed's margin (default) | the bootstrap interval
DEFAULT_ROUNDS = 1000  # promotion.bootstrap_rounds when params.yaml does not say
# The label job's intervals on the labelled shadow rows, tagged on the challenger's model version
# (+ the champion's version): what POST /model/promote judges by under the interval rule.
TAG_SHADOW_INTERVALS = "shadow_intervals_vs_"


def decide_interval(intervals: dict[str, dict[str, float]]) -> tuple[bool, str]:
    """(promote?, reason) under `promotion.rule: interval`: the 95 % paired bootstrap interval of
    the AUC or F1 difference lies above zero, and the other's does not lie below zero."""
    shown = ", ".join(interval_text(metric, intervals[metric]) for metric in COMPARED)
    for better, other in (("roc_auc", "f1"), ("f1", "roc_auc")):
        if intervals[better]["low"] > 0 and intervals[other]["high"] >= 0:
            return True, f"{better} interval above zero, {other} not below ({shown})"
    return False, f"no 95 % interval above zero without the other below ({shown})"


def interval_text(metric: str, interval: dict[str, float]) -> str:
    """ "roc_auc +0.0031 [-0.0012, +0.0074]": the difference and its interval."""
    return f"{metric} {interval['difference']:+.4f} [{interval['low']:+.4f}, {interval['high']:+.4f}]"


def rule_settings(params: dict[str, Any]) -> tuple[str, float, int]:
    """(rule, margin, bootstrap rounds) of params.yaml's `promotion` section; ValueError (or KeyError,
    TypeError) when it is unusable."""
    rule = params.get("rule", "margin")
    if rule not in RULES:
        raise ValueError(f"promotion.rule must be one of {RULES}, got {rule!r}")
    return rule, float(params["min_improvement"]), int(params.get("bootstrap_rounds", DEFAULT_ROUNDS))


def judge(rule: str, challenger: dict[str, float], champion: dict[str, float] | None, margin: float,
          intervals: dict[str, dict[str, float]] | None) -> tuple[bool, str]:  # fmt: skip
    """(promote?, reason) under `rule` (RULES); `intervals` (accidents.model.bootstrap) for "interval"."""
    if rule not in RULES:
        raise ValueError(f"promotion.rule must be one of {RULES}, got {rule!r}")
    if champion is None or rule == "margin":
        return decide(challenger, champion, margin)
    if intervals is None:
        raise ValueError("promotion.rule interval needs the bootstrap intervals")
    return decide_interval(intervals)
