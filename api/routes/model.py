"""GET /model: what serves (loudly flagging synthetic data) and the shadow challenger; POST /model/reload
(admin): check the aliases now; POST /model/promote and DELETE /model/challenger (admin): the challenger."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, HTTPException, status
from fastapi.concurrency import run_in_threadpool
from sqlalchemy.exc import SQLAlchemyError

from accidents.config import CHALLENGER_ALIAS, CHAMPION_ALIAS, Paths, load_params
from accidents.model.promotion import COMPARED, decide
from api.deps import AdminUser, Caller, MetricsDep, ModelServiceDep, ServicesDep, serving_model
from api.monitoring.shadow_report import shadow_report
from api.schemas import ChallengerInfo, DropResponse, ModelInfo, PromoteRequest, PromoteResponse
from api.services import Services
from api.serving.model_service import ModelService, Served
from api.serving.registry_client import RegistryError

router = APIRouter(prefix="/model", tags=["model"])
SYNTHETIC_WARNING = (
    "SYNTHETIC DATA: this model was trained on generated demo data, not on real accident records; "
    "its predictions mean nothing. Provide the BAAC data (BAAC_DATA_DIR or network) and retrain."
)


@router.get("", response_model=ModelInfo, responses={503: {"description": "no model loaded yet"}})
def model_info(_: Caller, services: ServicesDep, served: Annotated[Served, Depends(serving_model)]) -> ModelInfo:
    return describe(services.models, served, services.challenger)


@router.post("/reload")
async def reload_model(_: AdminUser, models: ModelServiceDep, metrics: MetricsDep, services: ServicesDep
                       ) -> dict[str, Any]:  # fmt: skip
    """Check the registry's champion (and challenger) alias now; load and swap if it moved (a broken
    model is rejected)."""
    result = await run_in_threadpool(models.check)
    metrics.model_checks.labels(result.action).inc()
    if services.challenger is not None:
        challenged = await run_in_threadpool(services.challenger.check)
        metrics.shadow.checks.labels(challenged.action).inc()
    served = models.current
    info = describe(models, served, services.challenger).model_dump() if served else None
    return {"check": result.as_dict(), "model": info}


def describe(models: ModelService, served: Served, challenger: ModelService | None = None) -> ModelInfo:
    metadata = served.bundle.metadata
    synthetic = metadata.data_source != "real"
    return ModelInfo(
        model_name=metadata.model_name,
        version=metadata.version,
        run_id=metadata.run_id,
        threshold=metadata.threshold,
        data_source=metadata.data_source,
        synthetic=synthetic,
        warning=SYNTHETIC_WARNING if synthetic else None,
        trained_at=metadata.trained_at,
        model_family=metadata.model_family,
        metrics=metadata.metrics,
        source=served.source,
        degraded=models.degraded,
        loaded_at=served.loaded_at,
        tracking_uri=models.tracking_uri,
        last_check=models.last_check.as_dict() if models.last_check else None,
        shadow_enabled=challenger is not None,
        challenger=_challenger_info(challenger.current if challenger else None),
    )


def _challenger_info(served: Served | None) -> ChallengerInfo | None:
    if served is None:
        return None
    metadata = served.bundle.metadata
    return ChallengerInfo(
        version=metadata.version, run_id=metadata.run_id, threshold=metadata.threshold,
        data_source=metadata.data_source, trained_at=metadata.trained_at, model_family=metadata.model_family,
        metrics=metadata.metrics, loaded_at=served.loaded_at,
    )  # fmt: skip


# --- the shadow challenger: promote it or drop it (admin), audited in MLflow -----------------

NO_SHADOW = "the shadow is off (SHADOW_ENABLED=false): no challenger is loaded"
REGISTRY_DOWN = {503: {"description": "MLflow registry or prediction log store unavailable (retry later)"}}
EVIDENCE_TAG_LIMIT = 5000  # MLflow keeps tag values up to 5,000 characters on every backend


@router.post("/promote", response_model=PromoteResponse,
             responses={409: {"description": "no challenger, or the promotion rule says no (override not set)"},
                        **REGISTRY_DOWN})  # fmt: skip
def promote_challenger(
    admin: AdminUser, services: ServicesDep, body: Annotated[PromoteRequest | None, Body()] = None
) -> dict[str, Any]:
    """Make the loaded challenger the champion. The promotion rule of params.yaml (`promotion`)
    judges the shadow evidence (realized AUC/F1 of both models on the same labelled live rows);
    without such evidence, or when the rule says no, only `{"override": true}` promotes. Who, when,
    the evidence, the rule's verdict and the override are tagged on the promoted version."""
    request = body or PromoteRequest()
    challenger, served = _challenger(services)
    champion = services.models.current
    champion_version = champion.version if champion else None
    evidence = _evidence(services, served.version, champion_version)
    grades = (evidence or {}).get("realized") or {}
    scores = {role: grades.get(role) or {} for role in ("challenger", "champion")}
    applicable = all(scores[role].get(metric) is not None for role in scores for metric in COMPARED)
    if applicable:
        margin = _promotion_margin(services)
        verdict, reason = decide(scores["challenger"], scores["champion"], margin)
    else:
        verdict, reason = None, "no realized AUC/F1 of both models on labelled shadow rows yet (run the label job)"
    if not verdict and not request.override:
        raise HTTPException(status.HTTP_409_CONFLICT, f"challenger {served.version} not promoted: {reason}; "
                            'send {"override": true} to promote anyway (recorded)')  # fmt: skip
    tags = {
        "promotion": "promoted",
        "promoted_by": admin.username,
        "promoted_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "promotion_via": "api",
        "promotion_override": str(request.override and not verdict).lower(),
        "promotion_reason": (request.reason or reason)[:500],
        "promotion_rule": reason[:500],
        "promotion_previous_champion": str(champion_version),
        "promotion_evidence": json.dumps(evidence, default=str)[:EVIDENCE_TAG_LIMIT],
    }
    registry = challenger.registry
    try:
        registry.set_alias(CHAMPION_ALIAS, served.version)
        registry.delete_alias(CHALLENGER_ALIAS)
        registry.set_version_tags(served.version, tags)
        if champion_version and champion_version != served.version:
            registry.set_version_tags(
                champion_version, {"replaced_by": served.version, "replaced_at": tags["promoted_at"]}
            )
    except RegistryError as error:
        raise _registry_down(error) from None
    _recheck(services)
    return {
        "promoted_version": served.version,
        "previous_champion": champion_version,
        "rule_applied": applicable,
        "rule_promotes": verdict,
        "rule_reason": reason,
        "override": bool(request.override),
        "evidence": evidence,
        "audit_tags": tags,
    }


@router.delete("/challenger", response_model=DropResponse,
               responses={409: {"description": "no challenger loaded"}, **REGISTRY_DOWN})  # fmt: skip
def drop_challenger(admin: AdminUser, services: ServicesDep) -> dict[str, Any]:
    """Stop shadowing the challenger: its alias is removed (the version stays in the registry, tagged)."""
    challenger, served = _challenger(services)
    tags = {"shadow_dropped_by": admin.username, "shadow_dropped_at": datetime.now(UTC).isoformat(timespec="seconds")}
    try:
        challenger.registry.delete_alias(CHALLENGER_ALIAS)
        challenger.registry.set_version_tags(served.version, tags)
    except RegistryError as error:
        raise _registry_down(error) from None
    _recheck(services)
    return {"dropped_version": served.version, "audit_tags": tags}


def _challenger(services: Services) -> tuple[ModelService, Served]:
    challenger = services.challenger
    if challenger is None:
        raise HTTPException(status.HTTP_409_CONFLICT, NO_SHADOW)
    served = challenger.current
    if served is None or served.version is None:
        raise HTTPException(status.HTTP_409_CONFLICT, "no challenger is loaded (the registry has none, or it failed "
                            "to load: GET /model shows the last check)")  # fmt: skip
    return challenger, served


def _evidence(services: Services, challenger: str, champion: str | None) -> dict[str, Any] | None:
    engine = services.prediction_log.engine
    if engine is None:
        return None
    try:
        report = shadow_report(engine, challenger)
    except SQLAlchemyError as error:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "prediction log store unavailable: retry later",
                            headers={"Retry-After": "5"}) from error  # fmt: skip
    return next((entry for entry in report if entry["champion_version"] == champion), None)


def _promotion_margin(services: Services) -> float:
    """promotion.min_improvement of the project's params.yaml (the rule's one source of truth)."""
    path = Paths(services.settings.project_dir).params
    try:
        return float(load_params(path)["promotion"]["min_improvement"])
    except (OSError, KeyError, TypeError, ValueError) as error:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, f"promotion rule unavailable: cannot read "
                            f"promotion.min_improvement from {path} ({type(error).__name__})") from None  # fmt: skip


def _recheck(services: Services) -> None:
    """Swap to the new champion and unload the challenger now, not at the next poll."""
    services.metrics.model_checks.labels(services.models.check().action).inc()
    if services.challenger is not None:
        services.metrics.shadow.checks.labels(services.challenger.check().action).inc()


def _registry_down(error: RegistryError) -> HTTPException:
    return HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, f"MLflow registry unavailable: {error}",
                         headers={"Retry-After": "10"})  # fmt: skip
