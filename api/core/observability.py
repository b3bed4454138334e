"""Prometheus metrics, JSON request logs and the request body size limit (pure ASGI middleware).

Per request this costs about 25 us (measured in process, issue #26; it was ~45 us): the request
id is a per-process random prefix and a counter (uuid4 read os.urandom per request), the labelled
metric children are looked up once per (method, route, status), the content length is read from
the raw headers, and the JSON log line's time string is formatted once per second.
"""

from __future__ import annotations

import itertools
import json
import logging
import secrets
import sys
import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.monitoring.alerts import AlertMetrics
from api.monitoring.writer import LogMetrics
from api.serving.shadow import ShadowMetrics

access_logger = logging.getLogger("api.access")
LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    """One registry per app, so several apps (tests) never share counters."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("http_requests", "HTTP requests", ["method", "route", "status"], registry=self.registry)
        self.latency = Histogram(
            "http_request_duration_seconds",
            "HTTP request latency",
            ["method", "route", "status"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.predictions = Counter(
            "predictions", "Predicted rows per class and model version", ["predicted_class", "model_version"],
            registry=self.registry,
        )  # fmt: skip
        self.model_info = Gauge(
            "model_info", "The serving model (value 1)", ["version", "source", "data_source"], registry=self.registry
        )
        self.model_version = Gauge("model_version", "Registry version of the serving model", registry=self.registry)
        self.model_test_auc = Gauge(
            "model_test_auc", "Serving model's ROC AUC on the test period (evaluate stage)", ["version"],
            registry=self.registry,
        )  # fmt: skip
        # the report-time model (POST /v2/predict): its own series, so predictions_total stays the seed's
        self.report_predictions = Counter(
            "report_predictions", "Rows predicted by the report-time model (POST /v2/predict) per class and version",
            ["predicted_class", "model_version"], registry=self.registry,
        )  # fmt: skip
        self.report_model_info = Gauge(
            "report_model_info", "The serving report-time model (value 1)", ["version", "source", "data_source"],
            registry=self.registry,
        )  # fmt: skip
        self.report_model_test_auc = Gauge(
            "report_model_test_auc", "Serving report-time model's ROC AUC on the test period (evaluate stage)",
            ["version"], registry=self.registry,
        )  # fmt: skip
        self.model_checks = Counter("model_checks", "Champion checks by outcome", ["action"], registry=self.registry)
        self.prediction_log = LogMetrics(self.registry)  # api.monitoring.writer
        self.shadow = ShadowMetrics(self.registry)  # api.serving.shadow
        self.alerts = AlertMetrics(self.registry)  # api.monitoring.alerts: what Alertmanager delivered
        self.retrain_runs = Counter(
            "retrain_runs", "POST /retrain outcomes", ["orchestrator", "outcome"], registry=self.registry
        )

    def set_report_model(self, version: str | None, source: str, data_source: str,
                         test_auc: float | None = None) -> None:  # fmt: skip
        self.report_model_info.clear()
        self.report_model_info.labels(version or "unknown", source, data_source).set(1)
        self.report_model_test_auc.clear()  # the EstimatedAucDrop alert compares it with model_estimated_auc
        if test_auc is not None:
            self.report_model_test_auc.labels(version or "unknown").set(test_auc)

    def set_model(self, version: str | None, source: str, data_source: str, test_auc: float | None = None) -> None:
        self.model_info.clear()
        self.model_info.labels(version or "unknown", source, data_source).set(1)
        self.model_test_auc.clear()  # the RealizedAucDrop alert compares it with model_realized_auc
        if test_auc is not None:
            self.model_test_auc.labels(version or "unknown").set(test_auc)
        try:
            self.model_version.set(float(version or "nan"))
        except ValueError:
            self.model_version.set(float("nan"))


def _route_template(scope: Scope) -> str:
    route = scope.get("route")
    return getattr(route, "path", None) or "<unmatched>"


class RequestMiddleware:
    """Metrics per route template and status, one JSON log line per request, body size limit.

    The log line carries method, route, path, status, duration and client: never headers,
    query strings or bodies (tokens and passwords travel there).
    """

    def __init__(self, app: ASGIApp, metrics: Metrics, max_body_bytes: int):
        self.app = app
        self.metrics = metrics
        self.max_body_bytes = max_body_bytes
        self._id_prefix = secrets.token_hex(4)  # unique across processes and restarts; the counter within
        self._ids = itertools.count()
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}  # (counter, histogram) per labels

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        request_id = f"{self._id_prefix}{next(self._ids) & 0xFFFFFFFF:08x}"  # 16 hex characters, as uuid4's were
        scope.setdefault("state", {})["request_id"] = request_id  # request.state.request_id (prediction log)
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", []).append((b"x-request-id", request_id.encode()))
            await send(message)

        try:
            if self._declared_too_large(scope):
                await self._too_large()(scope, receive, send_wrapper)
            else:
                await self.app(scope, self._limited(receive), send_wrapper)
        finally:
            self._record(scope, status, time.perf_counter() - start, request_id)

    def _declared_too_large(self, scope: Scope) -> bool:
        for name, value in scope["headers"]:  # raw, lower-case names (ASGI)
            if name == b"content-length":
                return not value.isdigit() or int(value) > self.max_body_bytes
        return False

    def _too_large(self) -> JSONResponse:
        return JSONResponse({"detail": f"request body larger than {self.max_body_bytes} bytes"}, status_code=413)

    def _limited(self, receive: Receive) -> Receive:
        """Count streamed (chunked) bodies too."""
        received = 0

        async def wrapped() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    raise HTTPException(413, f"request body larger than {self.max_body_bytes} bytes")
            return message

        return wrapped

    def _record(self, scope: Scope, status: int, elapsed: float, request_id: str) -> None:
        route = _route_template(scope)
        method = scope.get("method", "")
        requests, latency = self._metric_children(method, route, status)
        requests.inc()
        latency.observe(elapsed)
        client = scope.get("client")
        access_logger.info(
            "request",
            extra={
                "fields": {
                    "request_id": request_id,
                    "method": method,
                    "route": route,
                    "path": scope.get("path", ""),
                    "status": status,
                    "duration_ms": round(elapsed * 1000, 2),
                    "client": client[0] if client else None,
                }
            },
        )

    def _metric_children(self, method: str, route: str, status: int) -> tuple[Any, Any]:
        """The labelled children, looked up once per label set (route templates and statuses are few)."""
        key = (method, route, status)
        children = self._children.get(key)
        if children is None:
            labels = (method, route, str(status))
            children = self._children[key] = (self.metrics.requests.labels(*labels),
                                              self.metrics.latency.labels(*labels))  # fmt: skip
        return children


# json.dumps(entry, default=str) builds a JSONEncoder on every call (non-default arguments); one
# encoder made once writes the same line ~3 us faster (issue #26).
_ENCODER = json.JSONEncoder(default=str)


class JsonFormatter(logging.Formatter):
    _cached: tuple[int, str] = (-1, "")  # (second, its time string): one tuple, so threads never mix the two

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self._time_of(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update(getattr(record, "fields", {}))
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return _ENCODER.encode(entry)  # json.dumps' line (orjson has no ", " separators)

    def _time_of(self, record: logging.LogRecord) -> str:
        """formatTime's ISO 8601 local time, formatted once per second."""
        second, text = self._cached
        if int(record.created) != second:
            second, text = int(record.created), self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z")
            self._cached = (second, text)
        return text


def configure_logging(level: str) -> None:
    """JSON lines on stderr for the api.* loggers; uvicorn's access log (which prints query strings) off."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("api")
    logger.handlers[:] = [handler]
    logger.setLevel(level.upper())
    logger.propagate = False
    logging.getLogger("uvicorn.access").disabled = True
