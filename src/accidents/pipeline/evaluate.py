"""DVC stage `evaluate`: challenger vs champion on the held-out test split, then promote or not.

Each model `train` produced (accidents.pipeline.lifecycle: the seed's, then the report-time
model's unless `pipeline.models` leaves it out) goes through the same function and the same rule,
on its own registered model, aliases, test rows and files (reports/report_time/evaluated/,
models/report_time/served/champion.zip for the report-time model).

The test split is the newest period (temporal split): both models are scored on the same rows.
The challenger's scores are also written per calendar month (reports/test_by_month.json, a DVC
metric; by_month.csv and calibration.csv, DVC plots; the same as MLflow metrics and PNGs).

A version that is not promoted becomes the registry's `challenger` (alias CHALLENGER_ALIAS; the
API scores live traffic with it in the shadow of the champion); a promotion clears that alias.

The decision reports the paired bootstrap 95 % interval of the ROC AUC and F1 differences on the
test rows (accidents.model.bootstrap; `promotion.bootstrap_rounds`), logged with it (MLflow
metrics promotion_interval/*, metrics.json "intervals", stdout). `promotion.rule: interval`
promotes when an interval lies above zero and the other's not below; the default `margin`:

Promotion rule (params `promotion.min_improvement`, absolute): the challenger becomes
`champion` when it beats the champion by more than the margin on ROC AUC or on F1 without
losing more than the margin on the other; the first model is always promoted. Before it, the
data-source guard (accidents.model.promotion.source_refusal): a synthetic challenger is never scored
against, nor promoted over, a real champion (nor promoted at all with ENVIRONMENT=production); the
stage then fails, the version tagged `promotion=rejected` with the reason. A champion that exists but
cannot be loaded stops the stage too (it used to count as absent, so any challenger replaced it):
a person who has checked it sets ACCIDENTS_FORCE_PROMOTION=1 for one run to judge without it. The decision
and both scores go to stdout, MLflow and metrics.json; models/champion.zip (the API's offline
copy) is replaced atomically, and only with a model that loaded and scored.
"""

from __future__ import annotations

import os
from dataclasses import replace
from typing import Any

import mlflow
import pandas as pd

from accidents.config import (
    CHALLENGER_ALIAS,
    CHAMPION_ALIAS,
    ENV_FORCE_PROMOTION,
    load_params,
    paths,
    production_mode,
)
from accidents.features import ACCIDENT_DATE
from accidents.model import registry
from accidents.model.bootstrap import paired_intervals
from accidents.model.model_store import ModelBundle, ModelLoadError, read_bundle, write_bundle
from accidents.model.modeling import score, score_by_month
from accidents.model.plots import write_plots, write_time_plots
from accidents.model.promotion import (  # noqa: F401 - the rule lives there (the API applies it too)
    COMPARED,
    RULES,
    decide,
    interval_text,
    judge,
    source_refusal,
)
from accidents.pipeline.lifecycle import ModelLine, report_time_line, seed_line
from accidents.stage import PipelineError, log, run_report_time, run_stage, selected, write_json


def current_champion(client: Any, challenger: ModelBundle, line: ModelLine) -> tuple[ModelBundle | None, bool]:
    """(the registry's champion unless it is the challenger itself, forced past an unloadable one?).
    Fails (PipelineError) when the challenger's data source forbids the comparison, or when the
    champion cannot be loaded (unless ACCIDENTS_FORCE_PROMOTION=1)."""
    version = registry.champion_version(client, line.registered_name)
    champion = None if version is None or str(version.version) == challenger.metadata.version else version
    source = None if champion is None else (champion.tags or {}).get(registry.TAG_DATA_SOURCE, "unknown")
    refusal = source_refusal(challenger.metadata.data_source, source, production_mode())
    if refusal is not None:
        reject(client, line.registered_name, challenger.metadata.version, refusal)
        against = f" v{champion.version}" if champion is not None else ""
        raise PipelineError(f"challenger v{challenger.metadata.version} NOT promoted: {refusal}; "
                            f"champion{against} left unchanged")  # fmt: skip
    if champion is None:
        return None, False
    try:
        return registry.load_version(client, champion, line.example), False
    except ModelLoadError as error:
        if os.environ.get(ENV_FORCE_PROMOTION) == "1":
            log.warning("champion v%s cannot be loaded (%s): %s=1, judging the challenger as the first model",
                        champion.version, error, ENV_FORCE_PROMOTION)  # fmt: skip
            return None, True
        raise PipelineError(f"champion v{champion.version} cannot be loaded ({error}): promotion stopped, champion "
                            f"left unchanged. Repair it, or rerun evaluate with {ENV_FORCE_PROMOTION}=1 to promote "
                            "the challenger without comparing (recorded)") from error  # fmt: skip


def reject(client: Any, name: str, version: str, reason: str) -> None:
    """Record on the version that it was refused, and why, before the stage fails."""
    client.set_model_version_tag(name, version, "promotion", "rejected")
    client.set_model_version_tag(name, version, "promotion_reason", reason[:500])


def evaluate(params: dict[str, Any], line: ModelLine | None = None) -> dict[str, Any]:
    """Judge `line`'s challenger (default: the seed model) against its champion on its test rows."""
    line = line or seed_line(paths())
    try:
        challenger = read_bundle(line.challenger, line.example)
    except ModelLoadError as error:
        raise PipelineError(f"{line.key} challenger model unusable, champion left unchanged: {error}") from error
    test = line.read_split("test")
    x_test, y_test = line.xy(test)
    registry.connect()
    client = registry.client()
    champion, forced = current_champion(client, challenger, line)

    challenger_probability = challenger.predict_proba(x_test)
    challenger_scores = score(y_test, challenger_probability, challenger.metadata.threshold)
    rule, margin = params.get("rule", "margin"), float(params["min_improvement"])
    if rule not in RULES:
        raise PipelineError(f"promotion.rule must be one of {RULES}, got {rule!r}")
    champion_scores, intervals = None, None
    if champion is not None:
        champion_probability = champion.predict_proba(x_test)
        champion_scores = score(y_test, champion_probability, champion.metadata.threshold)
        intervals = paired_intervals(y_test, (challenger_probability, challenger.metadata.threshold),
                                     (champion_probability, champion.metadata.threshold),
                                     int(params.get("bootstrap_rounds", 1000)))  # fmt: skip
    promoted, reason = judge(rule, challenger_scores, champion_scores, margin, intervals)
    if forced:
        reason = f"{ENV_FORCE_PROMOTION}=1: the champion could not be loaded, {reason}"

    write_plots(line.test_plots, y_test, challenger_probability, challenger.metadata.threshold)
    by_month = score_by_month(test[ACCIDENT_DATE], y_test, challenger_probability, challenger.metadata.threshold)
    write_time_plots(line.test_plots, by_month, y_test, challenger_probability)
    write_json(line.test_by_month, month_metrics(by_month))
    with mlflow.start_run(run_id=challenger.metadata.run_id):
        mlflow.log_metrics({f"test_{name}": value for name, value in challenger_scores.items()})
        mlflow.log_metrics({f"test_by_month/{row.month}/{name}": float(getattr(row, name))
                            for row in by_month.itertuples() for name in MONTH_METRICS
                            if pd.notna(getattr(row, name))})  # fmt: skip
        if champion_scores is not None:
            mlflow.log_metrics({f"champion_test_{name}": value for name, value in champion_scores.items()})
        if intervals is not None:
            mlflow.log_metrics({f"promotion_interval/{metric}/{bound}": intervals[metric][bound]
                                for metric in COMPARED for bound in ("difference", "low", "high")})  # fmt: skip
        mlflow.set_tags({"promotion_rule": rule})
        mlflow.set_tags({"promotion": "promoted" if promoted else "rejected", "promotion_reason": reason,
                         "compared_with_version": champion.metadata.version if champion else "none",
                         "promotion_forced": str(forced).lower()})  # fmt: skip
        mlflow.log_artifacts(str(line.test_plots), artifact_path="plots/test")
    version, registered = challenger.metadata.version, line.registered_name
    client.set_model_version_tag(registered, version, "promotion", "promoted" if promoted else "rejected")

    if promoted:
        client.set_registered_model_alias(registered, CHAMPION_ALIAS, version)
        registry.clear_challenger(client, registered)  # a promoted version is nobody's challenger any more
        test_metrics = {f"test_{name}": value for name, value in challenger_scores.items()}
        served = replace(challenger.metadata, metrics={**challenger.metadata.metrics, **test_metrics})
        write_bundle(line.champion, ModelBundle(challenger.model, served, line.example))
    else:
        # it loaded and passed the contract check (read_bundle) and scored the test split: the API
        # tries it on live traffic in the shadow of the champion (api/serving/shadow.py)
        client.set_registered_model_alias(registered, CHALLENGER_ALIAS, version)
        sync_local_copy(champion, line)

    return {
        "promoted": promoted,
        "reason": reason,
        "rule": rule,
        "min_improvement": margin,
        "intervals": intervals,
        "challenger": {"version": version, **_rounded(challenger_scores)},
        "champion": None if champion is None else {"version": champion.metadata.version, **_rounded(champion_scores)},
        "data_source": challenger.metadata.data_source,
    }


def sync_local_copy(champion: ModelBundle | None, line: ModelLine) -> None:
    """Keep the local champion copy (models/champion.zip for the seed) equal to the registry's
    champion (e.g. after a fresh clone)."""
    local = line.champion
    if champion is None:
        return
    try:
        if read_bundle(local, line.example).metadata.version == champion.metadata.version:
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


def report(line: ModelLine, params: dict[str, Any]) -> None:
    """Evaluate `line`'s model, write its metrics file and print the decision."""
    result = evaluate(params, line)
    write_json(line.metrics, result)
    challenger, champion = result["challenger"], result["champion"]
    print(f"{line.key} challenger v{challenger['version']}: ROC AUC {challenger['roc_auc']:.4f}  "
          f"F1 {challenger['f1']:.4f}")  # fmt: skip
    if champion:
        print(f"{line.key} champion   v{champion['version']}: ROC AUC {champion['roc_auc']:.4f}  "
              f"F1 {champion['f1']:.4f}")  # fmt: skip
        intervals = result["intervals"]
        print(f"difference, paired bootstrap {intervals['level']:.0%} interval ({intervals['rounds']} rounds): "
              + ", ".join(interval_text(metric, intervals[metric]) for metric in COMPARED))  # fmt: skip
    decision = "PROMOTED to champion" if result["promoted"] else "NOT promoted"
    print(f"{line.key} decision: {decision} ({result['reason']})", flush=True)


def main() -> None:
    project = paths()
    params = load_params(project.params)
    selected(params)  # a wrong pipeline.models fails before any work
    report(seed_line(project), params["promotion"])
    line = report_time_line(project)
    line.champion.parent.mkdir(parents=True, exist_ok=True)  # DVC output (persistent): the served copy, once one exists
    run_report_time(params, line.metrics.parent, line.challenger.parent, lambda: report(line, params["promotion"]))


if __name__ == "__main__":
    raise SystemExit(run_stage("evaluate", main))
