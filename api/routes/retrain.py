"""POST /retrain (admin): start one retraining run (202); GET /retrain/{run_id}: its state and outcome."""

from __future__ import annotations

from fastapi import APIRouter, Response, status

from api.db.crud import retrain_lock
from api.deps import AdminUser, MetricsDep, ModelServiceDep, OrchestratorDep, SessionDep
from api.orchestrators import OrchestratorError, RetrainConflictError, RetrainRun, promoted_during
from api.schemas import RetrainRunOut

router = APIRouter(prefix="/retrain", tags=["retrain"])
ERRORS = {
    401: {"description": "not authenticated"},
    403: {"description": "admin role required"},
    409: {"description": "a run is in progress (its run_id is in the answer)"},
    503: {"description": "orchestrator unreachable"},
}


@router.post("", status_code=status.HTTP_202_ACCEPTED, response_model=RetrainRunOut, responses=ERRORS)
def start_retraining(
    admin: AdminUser, orchestrator: OrchestratorDep, metrics: MetricsDep, session: SessionDep, response: Response
) -> RetrainRunOut:
    try:
        with retrain_lock(session):  # single flight across API replicas sharing the users database
            run = orchestrator.trigger(f"manual: {admin.username}")  # the run's reason: who asked
    except OrchestratorError as error:
        outcome = "conflict" if isinstance(error, RetrainConflictError) else "unavailable"
        metrics.retrain_runs.labels(orchestrator.name, outcome).inc()
        raise
    metrics.retrain_runs.labels(orchestrator.name, "started").inc()
    response.headers["Location"] = _status_url(run)
    return _out(run)


@router.get("/{run_id}", response_model=RetrainRunOut, responses={404: {"description": "unknown run"}, **ERRORS})
def retraining_status(
    run_id: str, _: AdminUser, orchestrator: OrchestratorDep, models: ModelServiceDep
) -> RetrainRunOut:
    run = orchestrator.status(run_id)
    if not run.done:
        return _out(run)
    champion = models.registry_champion()
    return _out(run, promoted_during(run, champion), champion[0] if champion else None)


def _status_url(run: RetrainRun) -> str:
    return f"/retrain/{run.run_id}"


def _out(run: RetrainRun, promoted: bool | None = None, champion_version: str | None = None) -> RetrainRunOut:
    return RetrainRunOut(
        **run.as_dict(), promoted=promoted, champion_version=champion_version, status_url=_status_url(run)
    )
