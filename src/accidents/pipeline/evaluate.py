"""DVC stage `evaluate`: challenger vs champion on the held-out test split, then promote or not.

The test split is the newest period (temporal split): both models are scored on the same rows.
The challenger's scores are also written per calendar month (reports/test_by_month.json, a DVC
metric; by_month.csv and calibration.csv, DVC plots; the same as MLflow metrics and PNGs).

A version that is not promoted becomes the registry's `challenger` (alias CHALLENGER_ALIAS; the
API scores live traffic with it in the shadow of the champion); a promotion clears that alias.

Promotion rule (params `promotion.min_improvement`, absolute): the challenger becomes
`champion` when it beats the champion by more than the margin on ROC AUC or on F1 without
losing more than the margin on the other; the first model is always promoted. The decision
and both scores go to stdout, MLflow and metrics.json; models/champion.zip (the API's offline
copy) is replaced atomically, and only with a model that loaded and scored.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import mlflow
import pandas as pd

from accidents.config import CHALLENGER_ALIAS, CHAMPION_ALIAS, MODEL_NAME, load_params, paths
from accidents.features import ACCIDENT_DATE, ACCIDENT_ID
from accidents.model import registry
from accidents.model.model_store import ModelBundle, ModelLoadError, read_bundle, write_bundle
from accidents.model.modeling import score, score_by_month, split_xy
from accidents.model.plots import write_plots, write_time_plots
from accidents.model.promotion import COMPARED, decide  # noqa: F401 - the rule lives there (the API applies it too)
from accidents.stage import PipelineError, log, run_stage, write_json


def current_champion(client: Any, challenger_version: str | None) -> ModelBundle | None:
    """The registry's champion, unless it is the challenger itself or cannot be loaded."""
    version = registry.champion_version(client)
    if version is None or str(version.version) == challenger_version:
        return None
    try:
        return registry.load_version(client, version)
    except ModelLoadError as error:
        log.warning("current champion version %s cannot be loaded (%s): treating it as absent", version.version, error)
        return None


def evaluate(params: dict[str, Any]) -> dict[str, Any]:
    project = paths()
    try:
        challenger = read_bundle(project.challenger)
    except ModelLoadError as error:
        raise PipelineError(f"challenger model unusable, champion left unchanged: {error}") from error
    test = pd.read_csv(project.split("test"), dtype={ACCIDENT_ID: str})
    x_test, y_test = split_xy(test)
    registry.connect()
    client = registry.client()
    champion = current_champion(client, challenger.metadata.version)

    challenger_probability = challenger.predict_proba(x_test)
    challenger_scores = score(y_test, challenger_probability, challenger.metadata.threshold)
    champion_scores = None
    if champion is not None:
        champion_scores = score(y_test, champion.predict_proba(x_test), champion.metadata.threshold)
    margin = float(params["min_improvement"])
    promoted, reason = decide(challenger_scores, champion_scores, margin)

    write_plots(project.plots / "test", y_test, challenger_probability, challenger.metadata.threshold)
    by_month = score_by_month(test[ACCIDENT_DATE], y_test, challenger_probability, challenger.metadata.threshold)
    write_time_plots(project.plots / "test", by_month, y_test, challenger_probability)
    write_json(project.test_by_month, month_metrics(by_month))
    with mlflow.start_run(run_id=challenger.metadata.run_id):
        mlflow.log_metrics({f"test_{name}": value for name, value in challenger_scores.items()})
        mlflow.log_metrics({f"test_by_month/{row.month}/{name}": float(getattr(row, name))
                            for row in by_month.itertuples() for name in MONTH_METRICS
                            if pd.notna(getattr(row, name))})  # fmt: skip
        if champion_scores is not None:
            mlflow.log_metrics({f"champion_test_{name}": value for name, value in champion_scores.items()})
        mlflow.set_tags({"promotion": "promoted" if promoted else "rejected", "promotion_reason": reason,
                         "compared_with_version": champion.metadata.version if champion else "none"})  # fmt: skip
        mlflow.log_artifacts(str(project.plots / "test"), artifact_path="plots/test")
    version = challenger.metadata.version
    client.set_model_version_tag(MODEL_NAME, version, "promotion", "promoted" if promoted else "rejected")

    if promoted:
        client.set_registered_model_alias(MODEL_NAME, CHAMPION_ALIAS, version)
        registry.clear_challenger(client)  # a promoted version is nobody's challenger any more
        test_metrics = {f"test_{name}": value for name, value in challenger_scores.items()}
        served = replace(challenger.metadata, metrics={**challenger.metadata.metrics, **test_metrics})
        write_bundle(project.champion, ModelBundle(challenger.model, served))
    else:
        # it loaded and passed the contract check (read_bundle) and scored the test split: the API
        # tries it on live traffic in the shadow of the champion (api/serving/shadow.py)
        client.set_registered_model_alias(MODEL_NAME, CHALLENGER_ALIAS, version)
        sync_local_copy(champion)

    return {
        "promoted": promoted,
        "reason": reason,
        "min_improvement": margin,
        "challenger": {"version": version, **_rounded(challenger_scores)},
        "champion": None if champion is None else {"version": champion.metadata.version, **_rounded(champion_scores)},
        "data_source": challenger.metadata.data_source,
    }


def sync_local_copy(champion: ModelBundle | None) -> None:
    """Keep models/champion.zip equal to the registry's champion (e.g. after a fresh clone)."""
    local = paths().champion
    if champion is None:
        return
    try:
        if read_bundle(local).metadata.version == champion.metadata.version:
            return
    except ModelLoadError:
        pass
    write_bundle(local, champion)
    log.info("local champion copy refreshed to version %s", champion.metadata.version)


MONTH_METRICS = ("roc_auc", "f1", "positive_rate", "predicted_positive_rate", "rows")


def month_metrics(by_month: pd.DataFrame) -> dict[str, dict[str, float | None]]:
    """{"2021-07": {"roc_auc": ..., "f1": ..., ...}}: what `dvc metrics show` prints per month."""
    return {
        row["month"]: {name: None if pd.isna(row[name]) else round(float(row[name]), 4) for name in MONTH_METRICS}
        for row in by_month.to_dict("records")
    }


def _rounded(scores: dict[str, float] | None) -> dict[str, float]:
    return {name: round(value, 4) for name, value in (scores or {}).items()}


def main() -> None:
    project = paths()
    result = evaluate(load_params(project.params)["promotion"])
    write_json(project.metrics, result)
    challenger, champion = result["challenger"], result["champion"]
    print(f"challenger v{challenger['version']}: ROC AUC {challenger['roc_auc']:.4f}  F1 {challenger['f1']:.4f}")
    if champion:
        print(f"champion   v{champion['version']}: ROC AUC {champion['roc_auc']:.4f}  F1 {champion['f1']:.4f}")
    decision = "PROMOTED to champion" if result["promoted"] else "NOT promoted"
    print(f"decision: {decision} ({result['reason']})", flush=True)


if __name__ == "__main__":
    raise SystemExit(run_stage("evaluate", main))
