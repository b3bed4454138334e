"""The promotion rule (params `promotion.min_improvement`), one definition for the pipeline's
`evaluate` stage (held-out test split) and the API's POST /model/promote (shadow evidence: both
models graded on the same labelled live rows). Plain Python: the API imports it.

Before the rule, the data-source guard (issue #23): a model trained on anything but real data is
never compared with, nor promoted over, a champion that may be real (its `data_source` tag is not
"synthetic"), whatever the margin or an override say; in production mode it is never promoted.
"""

from __future__ import annotations

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
