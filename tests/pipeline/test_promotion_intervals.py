"""Issue #24 item 4: the paired bootstrap interval of the AUC and F1 differences behind a promotion
decision, and `promotion.rule: interval` (promote when an interval lies above zero)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import f1_score, roc_auc_score

from accidents.model.bootstrap import _Scored, paired_intervals
from accidents.model.promotion import judge

RNG = np.random.default_rng(7)
Y = (RNG.random(4000) < 0.3).astype(int)
NOISY = np.clip(Y * 0.2 + RNG.random(4000) * 0.8, 0, 1)  # a weak model
SHARP = np.clip(Y * 0.6 + RNG.random(4000) * 0.4, 0, 1)  # a much better one


def test_weighted_metrics_equal_scikit_learn_on_the_resampled_rows():
    rows = np.random.default_rng(1).integers(0, len(Y), size=len(Y))
    weights = np.bincount(rows, minlength=len(Y)).astype(float)
    scored = _Scored(Y.astype(float), np.round(NOISY, 2), 0.5)  # rounded: ties, counted half
    assert scored.roc_auc(weights) == pytest.approx(roc_auc_score(Y[rows], np.round(NOISY, 2)[rows]), abs=1e-12)
    assert scored.f1(weights) == pytest.approx(f1_score(Y[rows], np.round(NOISY, 2)[rows] >= 0.5), abs=1e-12)


def test_a_clearly_better_challenger_has_its_intervals_above_zero_and_is_promoted_by_either_rule():
    intervals = paired_intervals(Y, (SHARP, 0.5), (NOISY, 0.5), rounds=300)
    assert intervals["rounds"] == 300 and intervals["level"] == 0.95
    for metric in ("roc_auc", "f1"):
        assert 0 < intervals[metric]["low"] <= intervals[metric]["difference"] <= intervals[metric]["high"]
    scores = {"roc_auc": roc_auc_score(Y, SHARP), "f1": 0.9}, {"roc_auc": roc_auc_score(Y, NOISY), "f1": 0.5}
    assert judge("interval", *scores, 0.01, intervals)[0] is True
    assert judge("margin", *scores, 0.01, intervals)[0] is True


def test_a_tie_is_not_promoted_by_the_interval_rule_and_a_worse_one_neither():
    same = paired_intervals(Y, (NOISY, 0.5), (NOISY, 0.5), rounds=100)
    assert same["roc_auc"] == {"difference": 0.0, "low": 0.0, "high": 0.0}
    promoted, reason = judge("interval", {"roc_auc": 0.7, "f1": 0.5}, {"roc_auc": 0.7, "f1": 0.5}, 0.01, same)
    assert promoted is False and "roc_auc +0.0000 [+0.0000, +0.0000]" in reason
    worse = paired_intervals(Y, (NOISY, 0.5), (SHARP, 0.5), rounds=100)
    assert judge("interval", {"roc_auc": 0.6, "f1": 0.4}, {"roc_auc": 0.9, "f1": 0.8}, 0.01, worse)[0] is False


def test_the_interval_rule_needs_a_gain_the_margin_rule_ignores():
    """+0.003 AUC, well under the 1 % margin, but sure: the interval rule promotes, the seed's does not."""
    intervals = {"roc_auc": {"difference": 0.003, "low": 0.001, "high": 0.005},
                 "f1": {"difference": 0.0, "low": -0.002, "high": 0.002}}  # fmt: skip
    challenger, champion = {"roc_auc": 0.853, "f1": 0.70}, {"roc_auc": 0.850, "f1": 0.70}
    assert judge("interval", challenger, champion, 0.01, intervals)[0] is True
    assert judge("margin", challenger, champion, 0.01, intervals)[0] is False
    assert judge("interval", challenger, None, 0.01, None) == (True, "no champion yet: the first model is promoted")


def test_the_intervals_are_reproducible_and_an_unknown_rule_is_refused():
    assert paired_intervals(Y, (SHARP, 0.5), (NOISY, 0.4), rounds=50) == paired_intervals(
        Y, (SHARP, 0.5), (NOISY, 0.4), rounds=50)  # fmt: skip
    with pytest.raises(ValueError, match=r"promotion\.rule must be one of"):
        judge("vibes", {"roc_auc": 0.7, "f1": 0.5}, {"roc_auc": 0.7, "f1": 0.5}, 0.01, None)
