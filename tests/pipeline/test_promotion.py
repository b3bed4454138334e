"""The promotion rule: beat the champion by more than the margin on one metric, lose at most that on the other."""

from __future__ import annotations

import pytest

from accidents.pipeline.evaluate import decide

CHAMPION = {"roc_auc": 0.840, "f1": 0.700}


def test_first_model_is_promoted():
    promoted, reason = decide({"roc_auc": 0.60, "f1": 0.10}, None, 0.01)
    assert promoted and "first" in reason


@pytest.mark.parametrize(
    ("challenger", "promoted"),
    [
        ({"roc_auc": 0.855, "f1": 0.700}, True),  # AUC better by 1.5 pt, F1 equal
        ({"roc_auc": 0.840, "f1": 0.715}, True),  # F1 better by 1.5 pt
        ({"roc_auc": 0.845, "f1": 0.705}, False),  # better by less than 1 pt on both
        ({"roc_auc": 0.860, "f1": 0.600}, False),  # better AUC but F1 collapses
        ({"roc_auc": 0.860, "f1": 0.692}, True),  # F1 loses 0.8 pt: within the margin
        ({"roc_auc": 0.820, "f1": 0.800}, False),  # F1 much better but AUC loses 2 pt
        ({"roc_auc": 0.830, "f1": 0.690}, False),  # worse on both
    ],
)
def test_rule(challenger, promoted):
    assert decide(challenger, CHAMPION, 0.01)[0] is promoted


def test_margin_comes_from_the_parameter():
    challenger = {"roc_auc": 0.845, "f1": 0.700}
    assert decide(challenger, CHAMPION, 0.01)[0] is False
    assert decide(challenger, CHAMPION, 0.001)[0] is True
