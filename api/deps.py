"""FastAPI dependencies: settings, DB session, the authenticated user, the admin check, services."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.concurrency import run_in_threadpool
from fastapi.security import OAuth2PasswordBearer
from sqlalchemy.orm import Session

from api.core.auth_cache import AuthCache, AuthState
from api.core.config import Settings
from api.core.observability import Metrics
from api.core.security import InvalidTokenError, decode_access_token
from api.core.throttle import LoginThrottle
from api.db import Role, User, auth_state, find_user
from api.model_service import ModelService, Served
from api.orchestrators import Orchestrator

oauth2_scheme = OAuth2PasswordBearer(tokenUrl="/auth/token", auto_error=False)
NO_MODEL = "no model is loaded yet: train one (`make pipeline`, or POST /retrain as admin), then retry"


# Dependencies that do no I/O are `async def`: FastAPI runs a plain `def` dependency in a worker
# thread, a hop that cost ~0.15 ms each on the /predict path (bench/README: profile).
async def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_session(request: Request) -> Iterator[Session]:
    with request.app.state.db.session() as session:
        yield session


async def get_model_service(request: Request) -> ModelService:
    return request.app.state.models


async def get_orchestrator(request: Request) -> Orchestrator:
    return request.app.state.orchestrator


async def get_metrics(request: Request) -> Metrics:
    return request.app.state.metrics


async def get_throttle(request: Request) -> LoginThrottle:
    return request.app.state.throttle


SettingsDep = Annotated[Settings, Depends(get_settings)]
SessionDep = Annotated[Session, Depends(get_session)]
ModelServiceDep = Annotated[ModelService, Depends(get_model_service)]
OrchestratorDep = Annotated[Orchestrator, Depends(get_orchestrator)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]
ThrottleDep = Annotated[LoginThrottle, Depends(get_throttle)]


def unauthorized(detail: str) -> HTTPException:
    return HTTPException(status.HTTP_401_UNAUTHORIZED, detail, headers={"WWW-Authenticate": "Bearer"})


async def authenticated(request: Request, token: Annotated[str | None, Depends(oauth2_scheme)]) -> AuthState:
    """The caller, if the token is valid and its user still exists, is enabled and has not changed
    password since (the token's `ver` claim must match). The user's state comes from the DB,
    through a short-lived cache (api.core.auth_cache) so the hot path does no query."""
    if not token:
        raise unauthorized("not authenticated: send Authorization: Bearer <token> (POST /auth/token)")
    try:
        claims = decode_access_token(token, request.app.state.jwt_secret)
    except InvalidTokenError as error:
        raise unauthorized(str(error)) from None
    cache: AuthCache = request.app.state.auth_cache
    state = cache.get(claims.subject)
    if state is False:
        state = await run_in_threadpool(auth_state, request.app.state.db, claims.subject)
        cache.put(claims.subject, state)
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
