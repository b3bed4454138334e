"""POST /predict: one row (seed list or named object) or a bounded batch, validated against the contract.
POST /v2/predict: accident reports (the report contract), scored by the report-time model.

Hot path: raw body -> orjson -> one float64 numpy array -> the model grabbed once -> orjson out.
No DataFrame, no model loading.

The route's dependencies (services, bearer token, caller, `explain`) are resolved by `LeanRoute`
with the same functions FastAPI would call, in the same order (the caller first, then the query),
so the answers and errors are the same: FastAPI's generic resolution took ~30 % of the API's
CPU per request in process (cProfile, issue #26). The signature still declares them, for /docs.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from functools import lru_cache
from typing import Annotated, Any

import numpy as np
import orjson
from fastapi import APIRouter, HTTPException, Query, Request, status
from fastapi.dependencies.utils import request_params_to_args
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from prometheus_client import Counter

from accidents.model.explain import ExplainError
from accidents.model.model_store import ModelBundle, ModelMetadata
from accidents.store.prediction_log import REPORT_TIME_MODEL
from api.core.config import Settings
from api.deps import (
    Caller,
    ServicesDep,
    authenticated,
    get_services,
    oauth2_scheme,
    serving_model,
    serving_report_model,
)
from api.schemas import PredictResponse, ReportPredictResponse, predict_body_schema
from api.services import Services
from api.serving.explanations import check_explainable, explain_reports, explain_rows
from api.serving.prediction import parse_request
from api.serving.reports import LOGGED_FEATURES, parse_reports, report_body_schema, report_rows, score_reports


class OrjsonResponse(JSONResponse):
    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


class LeanRoute(APIRoute):
    """/predict's dependencies resolved directly: `get_services`, the bearer scheme, then
    `authenticated` (its 401/503 first, as FastAPI orders them), then the query parameters through
    FastAPI's own validation (the same 422 body); the endpoint is called with them. Only for
    endpoints whose parameters are `request`, `caller`, `services` and query parameters."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        endpoint, query_fields = self.endpoint, self.dependant.query_params
        expected = {"request", "caller", "services", *(field.name for field in query_fields)}
        if set(self.dependant.call.__annotations__) - {"return"} != expected:  # type: ignore[union-attr]
            raise TypeError(f"LeanRoute cannot resolve the parameters of {self.path}")

        async def handler(request: Request) -> Response:
            services = await get_services(request)
            caller = await authenticated(services, await oauth2_scheme(request))
            query: dict[str, Any] = {}
            if request.scope["query_string"]:  # none: every query parameter takes its default
                query, errors = request_params_to_args(query_fields, request.query_params)
                if errors:
                    raise RequestValidationError(errors)
            return await endpoint(request=request, caller=caller, services=services, **query)

        return handler


def build_router(settings: Settings) -> APIRouter:
    """The body schema shows the configured batch limit in /docs."""
    router = APIRouter(tags=["predict"], route_class=LeanRoute)
    max_batch_rows = settings.max_batch_rows
    explain_max_rows, explain_top = settings.explain_max_rows, settings.explain_top_features

    @router.post(
        "/predict",
        response_model=PredictResponse,
        response_class=OrjsonResponse,
        openapi_extra={"requestBody": predict_body_schema(settings.max_batch_rows)},
        responses={
            413: {"description": "request body too large"},
            409: {"description": "explain=true: the serving model's family has no explainer"},
            422: {
                "description": "a value outside the feature contract (field, row and rule named), "
                "or more rows than EXPLAIN_MAX_ROWS with explain=true"
            },
            503: {"description": "no model loaded yet"},
        },
    )
    async def predict(
        request: Request,
        caller: Caller,
        services: ServicesDep,
        explain: Annotated[
            bool,
            Query(
                description="add per row the exact TreeSHAP contributions of the 28 "
                "inputs to the raw score (log-odds) and the base value"
            ),
        ] = False,
    ) -> Response:
        # one dependency for the services used: each resolved dependency costs on this hot path
        parsed = parse_request(await request.body(), max_batch_rows)
        rows = parsed.matrix
        if explain:
            check_explainable(len(rows), explain_max_rows)
        served = serving_model(services.models)  # grabbed once: a swap during this request does not affect it
        bundle = served.bundle
        if bundle.uses_compiled(len(rows)):
            # at most ~3 ms of compiled trees (api/serving/inference.py): cheaper here than a thread hop
            probabilities = bundle.predict_proba(rows)
        else:
            probabilities = await services.inference.run(bundle.predict_proba, rows)
        metadata = bundle.metadata
        classes = (probabilities >= metadata.threshold).astype(np.int8)
        _count(services.metrics.predictions, classes, metadata.version)
        services.prediction_log.record(
            request.state.request_id, metadata.version, served.source, caller.role,
            metadata.threshold, rows, probabilities, classes, parsed.accident_ids,
        )  # fmt: skip
        if services.shadow is not None:  # sampled rows queued for the challenger; scored off this path
            services.shadow.submit(request.state.request_id, caller.role, rows, metadata.version, probabilities,
                                   classes, parsed.accident_ids)  # fmt: skip
        predictions = _predictions_of(metadata, classes, probabilities)
        if explain:
            await _explain(predictions, services, explain_rows, bundle, rows, explain_top)
        return _answer(metadata, predictions)

    @router.post(
        "/v2/predict",
        response_model=ReportPredictResponse,
        response_class=OrjsonResponse,
        openapi_extra={"requestBody": report_body_schema(max_batch_rows)},
        responses={
            413: {"description": "request body too large"},
            422: {
                "description": "a report outside the report contract (the field named, with its domain), an "
                "outcome field (grav) in a report, or more accidents than MAX_BATCH_ROWS"
            },
            409: {"description": "explain=true: the serving model's family has no explainer"},
            503: {"description": "no report-time model loaded (or REPORT_MODEL_ENABLED=false)"},
        },
    )
    async def predict_reports(
        request: Request,
        caller: Caller,
        services: ServicesDep,
        explain: Annotated[
            bool,
            Query(
                description="add per accident the exact TreeSHAP contributions (log-odds) of the report's "
                "fields (each feature's credited to the fields it is computed from) and of the model's 95 "
                "features, and the base value"
            ),
        ] = False,
    ) -> Response:
        """The report-time model (docs/report-time-model.md): one accident as reported (every vehicle
        and user, no injury outcome) or {"accidents": [...]}; one prediction per accident. Its rows
        go to the prediction log as /predict's do, with model="report_time" and the 95 inputs."""
        reports = parse_reports(await request.body(), max_batch_rows)  # their Tables
        accident_ids = reports.accident_ids
        if explain:
            check_explainable(len(accident_ids), explain_max_rows, "accidents")
        served = serving_report_model(services.report_models)  # grabbed once, as /predict does
        bundle = served.bundle
        if bundle.uses_compiled(len(accident_ids)):
            rows = report_rows(reports)
            probabilities = bundle.predict_proba(rows)
        else:  # scikit-learn's loop (milliseconds): features and scores on the inference thread, one hop
            rows, probabilities = await services.inference.run(score_reports, bundle.predict_proba, reports)
        metadata = bundle.metadata
        classes = (probabilities >= metadata.threshold).astype(np.int8)
        _count(services.metrics.report_predictions, classes, metadata.version)
        services.prediction_log.record(
            request.state.request_id, metadata.version, served.source, caller.role, metadata.threshold, rows,
            probabilities, classes, accident_ids, model=REPORT_TIME_MODEL, feature_names=LOGGED_FEATURES,
        )  # fmt: skip
        if services.report_shadow is not None:  # as /predict's: queued for the report-time challenger
            services.report_shadow.submit(request.state.request_id, caller.role, rows, metadata.version,
                                          probabilities, classes, accident_ids)  # fmt: skip
        predictions = _predictions_of(metadata, classes, probabilities)
        for prediction, accident_id in zip(predictions, accident_ids, strict=True):
            if accident_id is not None:
                prediction["accident_id"] = accident_id
        if explain:
            await _explain(predictions, services, explain_reports, bundle, rows, explain_top)
        return _answer(metadata, predictions)

    return router


async def _explain(
    predictions: list[dict[str, Any]],
    services: Services,
    explainer: Callable[..., list[dict[str, Any]]],
    bundle: ModelBundle,
    rows: np.ndarray,
    top: int,
) -> None:
    """Each prediction's explanation, computed on the inference thread (the event loop keeps
    answering); 409 when the serving model's family has no explainer."""
    try:
        explained = await services.inference.run(explainer, bundle, rows, top)
    except ExplainError as error:
        raise HTTPException(status.HTTP_409_CONFLICT, f"no explanations for this model: {error}") from None
    for prediction, explanation in zip(predictions, explained, strict=True):
        prediction["explanation"] = explanation


def _predictions_of(metadata: ModelMetadata, classes: np.ndarray, probabilities: np.ndarray) -> list[dict[str, Any]]:
    """One answer per row, as both routes give it."""
    threshold, version = metadata.threshold, metadata.version
    return [
        {"class": int(c), "probability": float(p), "threshold": threshold, "model_version": version}
        for c, p in zip(classes, probabilities, strict=True)
    ]


def _answer(metadata: ModelMetadata, predictions: list[dict[str, Any]]) -> OrjsonResponse:
    return OrjsonResponse({
        "model_version": metadata.version,
        "threshold": metadata.threshold,
        "data_source": metadata.data_source,
        "predictions": predictions,
    })  # fmt: skip


def _count(counter: Counter, classes: np.ndarray, version: str | None) -> None:
    """Rows per predicted class and version into `counter` (the seed's or the report-time model's)."""
    severe = int(classes.sum()) if len(classes) > 1 else int(classes[0])
    label = version or "unknown"
    if severe:
        _predictions(counter, "1", label).inc(severe)
    if len(classes) - severe:
        _predictions(counter, "0", label).inc(len(classes) - severe)


@lru_cache(maxsize=256)
def _predictions(counter: Counter, predicted_class: str, version: str) -> Counter:
    """The labelled child, looked up once per (counter, class, version): labels() takes a lock and
    builds its key on every call (~3 us a request, issue #26). The counter is never cleared."""
    return counter.labels(predicted_class, version)
