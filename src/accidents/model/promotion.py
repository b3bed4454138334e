"""The promotion rule (params `promotion.min_improvement`), one definition for the pipeline's
`evaluate` stage (held-out test split) and the API's POST /model/promote (shadow evidence: both
models graded on the same labelled live rows). Plain Python: the API imports it."""

from __future__ import annotations

COMPARED = ("roc_auc", "f1")


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
