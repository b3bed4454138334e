"""Promote the shadow challenger to champion, or drop it: the logic behind POST /model/promote and
DELETE /model/challenger (api/routes/model.py maps its errors to HTTP).

The promotion rule is the pipeline's (accidents.model.promotion.judge, `promotion.rule` and margin
from params.yaml), judged on the shadow evidence: realized AUC/F1 of both models on the same labelled
live rows, and the paired bootstrap 95 % intervals of their differences on those rows. The labels
are the label job's (the API holds none): it computes the intervals (accidents.model.bootstrap) and
tags them on the challenger's version with its job id; they are used only with the realized grades
of the same job, else reported unavailable (as under MIN_ROWS labelled rows). Under `rule: interval`
unavailable intervals cannot judge. Without such evidence, or when the rule says no, only an
explicit override promotes. Who, when, the evidence, the intervals, the rule's verdict and the
override are tagged on the promoted version in MLflow. One registry read (the challenger's tags),
admin route only: nothing here is on /predict's request path.

The audit trail is written before the alias moves (with `promotion=pending`): a registry that
refuses the record refuses the promotion (503, nothing moved), and the alias never moves without
a record. Once the alias has moved the promotion has happened: the writes after it (`promotion=
promoted`, the challenger alias cleared, `replaced_by` on the old champion) that fail are listed
in the answer's `warnings` (200), never turned into an error for a promotion that took place.
A challenger trained on synthetic data is never promoted over a champion that may be real, override
or not (accidents.model.promotion.source_refusal).

Both served models have this lifecycle (issue #25): `model` says whose challenger, the seed's
(accidents-severity, beside /predict, the default) or the report-time model's (accidents-report-time,
beside /v2/predict). Both registered models number their versions from 1, so every registry read and
write names the registered model explicitly (the registry client's default is the seed's): promoting
one model's challenger never moves the other's aliases, and its evidence is its own model's shadow.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from accidents.config import CHALLENGER_ALIAS, CHAMPION_ALIAS, Paths, load_params
from accidents.model.promotion import COMPARED, TAG_SHADOW_INTERVALS, judge, rule_settings, source_refusal
from accidents.store.prediction_log import REPORT_TIME_MODEL, SEED_MODEL
from api.monitoring.shadow_report import shadow_report
from api.services import Services
from api.serving.model_service import ModelService, Served
from api.serving.registry_client import MlflowRegistry, RegistryError

NO_SHADOW = "the shadow is off (SHADOW_ENABLED=false): no challenger is loaded"
NO_REPORT_MODEL = "the report-time model is off (REPORT_MODEL_ENABLED=false): it has no challenger"
NOT_LOADED = "no challenger is loaded (the registry has none, or it failed to load: GET /model shows the last check)"
INTERVAL_FIELDS = ("difference", "low", "high")
EVIDENCE_TAG_LIMIT = 5000  # MLflow keeps tag values up to 5,000 characters on every backend


class RefusedError(Exception):
    """The request cannot be carried out as things stand (the route answers 409)."""


class RuleUnavailableError(Exception):
    """params.yaml's promotion rule cannot be read (the route answers 503)."""


def served_models(services: Services, model: str) -> tuple[ModelService | None, ModelService | None]:
    """(champion service, challenger service) of `model`: the seed's or the report-time model's."""
    if model == REPORT_TIME_MODEL:
        if services.report_models is None:
            raise RefusedError(NO_REPORT_MODEL)
        return services.report_models, services.report_challenger
    if model != SEED_MODEL:
        raise ValueError(f"unknown model {model!r}")  # the routes only pass validated names
    return services.models, services.challenger


def loaded_challenger(services: Services, model: str = SEED_MODEL) -> tuple[ModelService, Served]:
    challenger = served_models(services, model)[1]
    if challenger is None:
        raise RefusedError(NO_SHADOW)
    served = challenger.current
    if served is None or served.version is None:
        raise RefusedError(NOT_LOADED)
    return challenger, served


def promote(services: Services, admin: str, override: bool, reason: str | None, model: str = SEED_MODEL
            ) -> dict[str, Any]:  # fmt: skip
    """Move `model`'s `champion` alias to its loaded challenger if the rule (or `override`) says so,
    tag the audit trail, and swap now. Raises RefusedError, RuleUnavailableError, RegistryError or
    SQLAlchemyError."""
    challenger, served = loaded_challenger(services, model)
    champions = served_models(services, model)[0]
    champion = champions.current if champions is not None else None
    champion_version = champion.version if champion else None
    refusal = source_refusal(served.bundle.metadata.data_source,
                             champion.bundle.metadata.data_source if champion else None,
                             services.settings.production)  # fmt: skip
    if refusal is not None:
        raise RefusedError(f"challenger {served.version} not promoted, even with an override: {refusal}")
    evidence = shadow_evidence(services, served.version, champion_version, model)
    grades = (evidence or {}).get("realized") or {}
    name = challenger.model_name  # every registry call names it: the client's default is the seed's
    intervals = recorded_intervals(challenger.registry, served.version, champion_version, grades.get("job_id"),
                                   name)  # fmt: skip
    rule, verdict, rule_reason = rule_verdict(services, grades, intervals)
    applicable = verdict is not None
    if not verdict and not override:
        raise RefusedError(f"challenger {served.version} not promoted: {rule_reason}; "
                      'send {"override": true} to promote anyway (recorded)')  # fmt: skip
    tags = {
        "promotion": "pending",  # "promoted" once the alias has moved
        "promoted_by": admin,
        "promoted_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "promotion_via": "api",
        "promotion_override": str(override and not verdict).lower(),
        "promotion_reason": (reason or rule_reason)[:500],
        "promotion_rule": rule_reason[:500],
        "promotion_previous_champion": str(champion_version),
        "promotion_evidence": json.dumps(evidence, default=str)[:EVIDENCE_TAG_LIMIT],
        "promotion_rule_name": rule or "not read (no realized grades)",
        "promotion_intervals": json.dumps(intervals)[:EVIDENCE_TAG_LIMIT],
    }
    registry = challenger.registry
    registry.set_version_tags(served.version, tags, name)  # the record first: refused here, nothing moved
    try:
        registry.set_alias(CHAMPION_ALIAS, served.version, name)
    except RegistryError as error:
        after_the_move(registry, lambda: registry.set_version_tags(served.version, {"promotion": "failed"}, name))
        raise error from None
    tags["promotion"] = "promoted"
    writes = [lambda: registry.set_version_tags(served.version, {"promotion": "promoted"}, name),
              lambda: registry.delete_alias(CHALLENGER_ALIAS, name)]  # fmt: skip
    if champion_version and champion_version != served.version:
        replaced = {"replaced_by": served.version, "replaced_at": tags["promoted_at"]}
        writes.append(lambda: registry.set_version_tags(champion_version, replaced, name))
    warnings = after_the_move(registry, *writes)
    recheck(services, model)
    return {
        "model": model,
        "model_name": name,
        "promoted_version": served.version,
        "previous_champion": champion_version,
        "rule_applied": applicable,
        "rule_promotes": verdict,
        "rule": rule,
        "rule_reason": rule_reason,
        "override": override,
        "evidence": evidence,
        "intervals": intervals,
        "audit_tags": tags,
        "warnings": warnings,
    }


def rule_verdict(services: Services, grades: dict[str, Any], intervals: dict[str, Any]
                 ) -> tuple[str | None, bool | None, str]:  # fmt: skip
    """(promotion.rule, promote?, reason) on the realized grades and intervals; promote? is None
    when the rule cannot judge (no grades: then params.yaml is not even read, so an override needs
    none; or rule interval without an interval)."""
    scores = {role: grades.get(role) or {} for role in ("challenger", "champion")}
    if not all(scores[role].get(metric) is not None for role in scores for metric in COMPARED):
        return None, None, "no realized AUC/F1 of both models on labelled shadow rows yet (run the label job)"
    rule, margin = promotion_rule(services)
    if rule == "interval" and "unavailable" in intervals:
        why = intervals["unavailable"]
        return rule, None, f"promotion.rule interval cannot judge: the interval is unavailable ({why})"
    usable = None if "unavailable" in intervals else intervals
    return rule, *judge(rule, scores["challenger"], scores["champion"], margin, usable)


def after_the_move(registry: MlflowRegistry, *writes: Callable[[], object]) -> list[str]:
    """Run the registry writes that follow a change already made; each failure becomes a warning."""
    warnings = []
    for write in writes:
        try:
            write()
        except RegistryError as error:
            warnings.append(f"a registry write after the champion alias moved failed ({error}); "
                            f"MLflow at {registry.tracking_uri} shows the promotion partly")  # fmt: skip
    return warnings


def drop(services: Services, admin: str, model: str = SEED_MODEL) -> dict[str, Any]:
    """Stop shadowing `model`'s challenger: its alias is removed (the version stays in the registry, tagged)."""
    challenger, served = loaded_challenger(services, model)
    name = challenger.model_name
    tags = {"shadow_dropped_by": admin, "shadow_dropped_at": datetime.now(UTC).isoformat(timespec="seconds")}
    challenger.registry.delete_alias(CHALLENGER_ALIAS, name)
    challenger.registry.set_version_tags(served.version, tags, name)
    recheck(services, model)
    return {"dropped_version": served.version, "audit_tags": tags, "model": model, "model_name": name}


def shadow_evidence(services: Services, challenger: str, champion: str | None, model: str = SEED_MODEL
                    ) -> dict[str, Any] | None:  # fmt: skip
    """The shadow report of this challenger of `model` against this champion (None: no log, or no such pair)."""
    engine = services.prediction_log.engine
    if engine is None:
        return None
    report = shadow_report(engine, challenger, model)
    return next((entry for entry in report if entry["champion_version"] == champion), None)


def promotion_rule(services: Services) -> tuple[str, float]:
    """promotion.rule and promotion.min_improvement of the project's params.yaml (the rule's one
    source of truth, read as `evaluate` reads it)."""
    path = Paths(services.settings.project_dir).params
    try:
        rule, margin, _ = rule_settings(load_params(path)["promotion"])
    except (OSError, KeyError, TypeError, ValueError) as error:
        raise RuleUnavailableError(f"promotion rule unavailable: cannot read the promotion section of {path} "
                                   f"({type(error).__name__}: {error})") from None  # fmt: skip
    return rule, margin


def recorded_intervals(registry: MlflowRegistry, challenger: str, champion: str | None, job_id: str | None,
                       name: str) -> dict[str, Any]:  # fmt: skip
    """The label job's paired intervals of challenger minus champion on the labelled shadow rows
    ({"rows", "rounds", "level", "roc_auc": {"difference", "low", "high"}, "f1": {...}, "job_id"}),
    or {"unavailable": why, ...}: none recorded, too few rows, or not of the job whose grades judge."""
    if job_id is None:
        return {"unavailable": "no label job has graded this challenger against this champion yet"}
    current = registry.alias_version(CHALLENGER_ALIAS, name)
    if current is None or current.version != challenger:
        return {"unavailable": f"the challenger alias no longer names version {challenger}"}
    text = current.tags.get(f"{TAG_SHADOW_INTERVALS}{champion}")
    try:
        recorded = json.loads(text) if text else None
    except ValueError:
        recorded = None
    if not isinstance(recorded, dict):
        return {"unavailable": f"no intervals recorded on version {challenger} against champion {champion} "
                               "(the label job records them when it can reach MLflow)"}  # fmt: skip
    if "unavailable" not in recorded and not all(_is_interval(recorded.get(metric)) for metric in COMPARED):
        return {"unavailable": f"the intervals recorded on version {challenger} are unreadable (run the label job)"}
    if recorded.get("job_id") != job_id:
        return {"unavailable": f"the recorded intervals are of label job {recorded.get('job_id')}, the realized "
                               f"grades of job {job_id}: run the label job again"}  # fmt: skip
    return recorded


def _is_interval(value: Any) -> bool:
    return isinstance(value, dict) and all(isinstance(value.get(bound), int | float) for bound in INTERVAL_FIELDS)


def recheck(services: Services, model: str = SEED_MODEL) -> None:
    """Swap `model` to its new champion and unload its challenger now, not at the next poll."""
    champions, challenger = served_models(services, model)
    if model == SEED_MODEL:
        services.metrics.model_checks.labels(services.models.check().action).inc()
    elif champions is not None:
        champions.check()  # as POST /model/reload: the report-time model's checks are not counted
    if challenger is not None:
        services.metrics.shadow.checked(challenger.check().action, model)
