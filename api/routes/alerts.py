"""Alertmanager's webhook receiver and what it received: `POST /monitoring/alerts` (Alertmanager
only: the bearer credential ALERTS_RECEIVER_TOKEN, never a user token) stores each alert by
fingerprint and counts it in /metrics; `GET /monitoring/alerts` (admins) lists them for the
dashboard. Nothing here runs on /predict's path: the receiver is its own route, its store is the
prediction log's database (accidents.store.received_alerts), written in a worker thread."""

from __future__ import annotations

import hmac
import logging
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request, status
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import ValidationError
from sqlalchemy.exc import SQLAlchemyError

from accidents.store import received_alerts
from api.deps import AdminUser, MetricsDep, PredictionLogDep, SettingsDep
from api.errors import store_unavailable
from api.monitoring.alerts import ReceivedAlert, ReceiverAnswer, WebhookPayload, store_rows

logger = logging.getLogger(__name__)
router = APIRouter(prefix="/monitoring", tags=["monitoring"])
NOT_CONFIGURED = "alert receiver not configured: set ALERTS_RECEIVER_TOKEN (and Alertmanager's credentials_file)"
_bearer = HTTPBearer(auto_error=False, scheme_name="AlertmanagerToken",
                     description="ALERTS_RECEIVER_TOKEN, Alertmanager's http_config authorization")  # fmt: skip
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


async def alertmanager(settings: SettingsDep, credentials: Credentials) -> None:
    """Only Alertmanager: its bearer secret, compared in constant time. With none configured no
    credential is right: 401 too, saying so (Alertmanager logs it; generic clients see an auth error)."""
    expected = settings.alerts_receiver_token
    if expected is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, NOT_CONFIGURED, headers={"WWW-Authenticate": "Bearer"})
    given = credentials.credentials.encode() if credentials is not None else b""
    if not hmac.compare_digest(given, expected.get_secret_value().encode()):
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "invalid alert receiver credential",
                            headers={"WWW-Authenticate": "Bearer"})  # fmt: skip


async def _bounded_body(request: Request, limit: int) -> bytes:
    """The body, refused with a 413 past `limit` bytes (announced or streamed)."""
    announced = request.headers.get("content-length", "")
    if announced.isdigit() and int(announced) > limit:
        raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, f"alert notification larger than {limit} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, f"alert notification larger than {limit} bytes")
    return bytes(body)


def _problems(error: ValidationError) -> list[dict[str, Any]]:
    """Where and what, never the input back (an alert's text is not echoed)."""
    return [{"loc": list(problem["loc"]), "msg": problem["msg"], "type": problem["type"]} for problem in error.errors()]


@router.post(
    "/alerts",
    response_model=ReceiverAnswer,
    dependencies=[Depends(alertmanager)],
    responses={
        401: {"description": "missing or wrong ALERTS_RECEIVER_TOKEN (or none configured)"},
        413: {"description": "notification larger than ALERTS_MAX_BODY_BYTES"},
        422: {"description": "not an Alertmanager webhook notification (version 4)"},
        503: {"description": "the store unavailable (Alertmanager retries)"},
    },
)
async def receive_alerts(request: Request, settings: SettingsDep, log: PredictionLogDep,
                         metrics: MetricsDep) -> ReceiverAnswer:  # fmt: skip
    """Alertmanager's webhook (version 4 payload): each alert upserted by fingerprint (firing, then
    resolved, is one row), counted in `alerts_received_total{alertname,status}`."""
    body = await _bounded_body(request, settings.alerts_max_body_bytes)
    try:
        payload = WebhookPayload.model_validate_json(body)
    except ValidationError as error:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, _problems(error)) from None
    if log.engine is None:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE, "prediction log store not open", headers={"Retry-After": "5"}
        )
    try:
        changed = await run_in_threadpool(received_alerts.upsert, log.engine, store_rows(payload))
    except SQLAlchemyError as error:
        raise store_unavailable(error) from None  # Alertmanager retries: nothing lost
    metrics.alerts.count(payload)
    logger.info("alerts received: %s", ", ".join(f"{a.labels['alertname']}={a.status}" for a in payload.alerts))
    return ReceiverAnswer(received=len(payload.alerts), changed=changed)


@router.get("/alerts", response_model=list[ReceivedAlert],
            responses={503: {"description": "prediction log store unavailable (retry later)"}})  # fmt: skip
def list_alerts(_: AdminUser, log: PredictionLogDep,
                limit: Annotated[int, Query(ge=1, le=500)] = 50) -> list[dict[str, Any]]:  # fmt: skip
    """Alerts Alertmanager delivered: firing first, then the latest notified; resolved ones stay listed."""
    if log.engine is None:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE, "prediction log store not open", headers={"Retry-After": "5"}
        )
    try:
        return received_alerts.recent(log.engine, limit)
    except SQLAlchemyError as error:
        raise store_unavailable(error) from None
