"""FastAPI dependencies: the one place that reads the app's services (`app.state.services`, built
by the lifespan), the DB session, the authenticated user and the admin check."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any, Literal

from fastapi import Depends, HTTPException, Query, Request, status
from fastapi.security import OAuth2PasswordBearer
from sqlalchemy.orm import Session

from accidents.store.prediction_log import REPORT_TIME_MODEL, SEED_MODEL
from api.core.auth_cache import AuthState, UsersDatabase, UsersDatabaseUnavailableError
from api.core.config import Settings
from api.core.observability import Metrics
from api.core.security import InvalidTokenError, VerifiedTokens
from api.core.throttle import LoginThrottle
from api.db.crud import find_user
from api.db.models import Role, User
from api.monitoring.service import PredictionLog
from api.orchestrators import Orchestrator
from api.services import Services
from api.serving.model_service import ModelService, Served

oauth2_scheme = OAuth2PasswordBearer(tokenUrl="/auth/token", auto_error=False)
USERS_DATABASE_UNAVAILABLE = "users database unavailable (unreachable or not answering): retry later"
USERS_DATABASE_RETRY_SECONDS = 5
NO_MODEL = "no model is loaded yet: train one (`make pipeline`, or POST /retrain as admin), then retry"
NO_REPORT_MODEL = (
    "no report-time model is loaded: the registry has no accidents-report-time@champion and there is no "
    "local copy (models/report_time/served/champion.zip); train one (`make pipeline` with `report_time` in "
    "params.yaml pipeline.models, or POST /retrain as admin), then retry"
)
REPORT_MODEL_DISABLED = "the report-time model is disabled on this server (REPORT_MODEL_ENABLED=false)"


# Dependencies that do no I/O are `async def`: FastAPI runs a plain `def` dependency in a worker
# thread, a hop that cost ~0.15 ms each on the /predict path (README: Benchmarks). FastAPI calls
# `get_services` once per request however many dependencies use it.
async def get_services(request: Request) -> Services:
    return request.app.state.services


ServicesDep = Annotated[Services, Depends(get_services)]


async def get_settings(services: ServicesDep) -> Settings:
    return services.settings


def users_database_unavailable() -> HTTPException:
    """503 + Retry-After: the users database is down or frozen (api.core.auth_cache.UsersDatabase)."""
    return HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, USERS_DATABASE_UNAVAILABLE,
                         headers={"Retry-After": str(USERS_DATABASE_RETRY_SECONDS)})  # fmt: skip


def get_session(services: ServicesDep) -> Iterator[Session]:
    """A users DB session; a 503 at once while the database is known down (logins, account
    routes), so no thread of the pool waits on a server that does not answer."""
    if not services.users_database.available:
        raise users_database_unavailable()
    with services.database.session() as session:
        yield session


async def get_model_service(services: ServicesDep) -> ModelService:
    return services.models


async def get_report_models(services: ServicesDep) -> ModelService | None:
    """The report-time model's service (POST /v2/predict); None when REPORT_MODEL_ENABLED=false."""
    return services.report_models


async def get_orchestrator(services: ServicesDep) -> Orchestrator:
    return services.orchestrator


async def get_metrics(services: ServicesDep) -> Metrics:
    return services.metrics


async def get_throttle(services: ServicesDep) -> LoginThrottle:
    return services.throttle


async def get_prediction_log(services: ServicesDep) -> PredictionLog:
    return services.prediction_log


async def get_jwt_secret(services: ServicesDep) -> str:
    return services.jwt_secret


async def get_users_database(services: ServicesDep) -> UsersDatabase:
    return services.users_database


SettingsDep = Annotated[Settings, Depends(get_settings)]
SessionDep = Annotated[Session, Depends(get_session)]
ModelServiceDep = Annotated[ModelService, Depends(get_model_service)]
ReportModelsDep = Annotated[ModelService | None, Depends(get_report_models)]
OrchestratorDep = Annotated[Orchestrator, Depends(get_orchestrator)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]
ThrottleDep = Annotated[LoginThrottle, Depends(get_throttle)]
JwtSecretDep = Annotated[str, Depends(get_jwt_secret)]
PredictionLogDep = Annotated[PredictionLog, Depends(get_prediction_log)]
UsersDatabaseDep = Annotated[UsersDatabase, Depends(get_users_database)]


# Tokens verified once per process (api.core.security.VerifiedTokens): keyed by secret and token, so
# apps with different secrets (tests) never share an entry.
verified_tokens = VerifiedTokens()


def unauthorized(detail: str) -> HTTPException:
    return HTTPException(status.HTTP_401_UNAUTHORIZED, detail, headers={"WWW-Authenticate": "Bearer"})


async def authenticated(services: ServicesDep, token: Annotated[str | None, Depends(oauth2_scheme)]) -> AuthState:
    """The caller, if the token is valid and its user still exists, is enabled and has not changed
    password since (the token's `ver` claim must match). The user's state comes from the DB,
    through a short-lived cache (api.core.auth_cache) so the hot path does no query; while the DB
    is down, from the user's last known state up to AUTH_MAX_STALE_SECONDS old, else a 503."""
    if not token:
        raise unauthorized("not authenticated: send Authorization: Bearer <token> (POST /auth/token)")
    try:
        claims = verified_tokens.claims(token, services.jwt_secret)  # expiry checked on every use
    except InvalidTokenError as error:
        raise unauthorized(str(error)) from None
    state = services.auth_cache.get(claims.subject)
    if state is False:
        try:
            state = await services.users_database.auth_state(claims.subject)
        except UsersDatabaseUnavailableError:
            raise users_database_unavailable() from None
    if state is None or state.disabled or state.token_version != claims.version:
        raise unauthorized("token revoked: log in again")
    return state


Caller = Annotated[AuthState, Depends(authenticated)]


def current_user(caller: Caller, session: SessionDep) -> User:
    """The caller's row, for routes that read or change their own account."""
    user = find_user(session, caller.username)
    if user is None:
        raise unauthorized("token revoked: log in again")
    return user


CurrentUser = Annotated[User, Depends(current_user)]


async def require_admin(caller: Caller) -> AuthState:
    """The one role check: the role stored in the database (not the token's claim) decides."""
    if caller.role != Role.ADMIN:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "admin role required")
    return caller


AdminUser = Annotated[AuthState, Depends(require_admin)]


def serving_model(service: ModelServiceDep) -> Served:
    served = service.current
    if served is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, NO_MODEL, headers={"Retry-After": "30"})
    return served


def serving_report_model(service: ModelService | None) -> Served:
    """The report-time model serving now, or a 503 saying why there is none."""
    if service is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, REPORT_MODEL_DISABLED)
    served = service.current
    if served is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, NO_REPORT_MODEL, headers={"Retry-After": "30"})
    return served


# --- the `model` query parameter of the routes that serve either model's monitoring or lifecycle
ModelName = Literal[SEED_MODEL, REPORT_TIME_MODEL]  # type: ignore[valid-type]


def model_query(what: str) -> Any:
    """The `model` query parameter: seed (/predict's model, the default) or report_time (/v2/predict's)."""
    return Query(description=f"{what}: seed (/predict's model, default) or report_time (/v2/predict's)")
