"""POST /predict: one row (seed list or named object) or a bounded batch, validated against the contract.

Hot path: raw body -> orjson -> one float64 numpy array -> the model grabbed once -> orjson out.
No DataFrame, no model loading.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from api.core.config import Settings
from api.core.observability import Metrics
from api.deps import Caller, ServicesDep, serving_model
from api.prediction import parse_request
from api.schemas import PredictResponse, predict_body_schema


class OrjsonResponse(JSONResponse):
    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def build_router(settings: Settings) -> APIRouter:
    """The body schema shows the configured batch limit in /docs."""
    router = APIRouter(tags=["predict"])
    max_batch_rows = settings.max_batch_rows

    @router.post(
        "/predict",
        response_model=PredictResponse,
        response_class=OrjsonResponse,
        openapi_extra={"requestBody": predict_body_schema(settings.max_batch_rows)},
        responses={
            413: {"description": "request body too large"},
            422: {"description": "a value outside the feature contract (field, row and rule named)"},
            503: {"description": "no model loaded yet"},
        },
    )
    async def predict(request: Request, caller: Caller, services: ServicesDep) -> Response:
        # one dependency for the services used: each resolved dependency costs on this hot path
        parsed = parse_request(await request.body(), max_batch_rows)
        rows = parsed.matrix
        served = serving_model(services.models)  # grabbed once: a swap during this request does not affect it
        bundle = served.bundle
        if bundle.uses_compiled(len(rows)):
            # at most ~3 ms of compiled trees (api/inference.py): cheaper here than a thread hop
            probabilities = bundle.predict_proba(rows)
        else:
            probabilities = await services.inference.run(bundle.predict_proba, rows)
        metadata = bundle.metadata
        classes = (probabilities >= metadata.threshold).astype(np.int8)
        _count(services.metrics, classes, metadata.version)
        services.prediction_log.record(
            request.state.request_id, metadata.version, served.source, caller.role,
            metadata.threshold, rows, probabilities, classes, parsed.accident_ids,
        )  # fmt: skip
        predictions = [
            {
                "class": int(c),
                "probability": float(p),
                "threshold": metadata.threshold,
                "model_version": metadata.version,
            }
            for c, p in zip(classes, probabilities, strict=True)
        ]
        body = {
            "model_version": metadata.version,
            "threshold": metadata.threshold,
            "data_source": metadata.data_source,
            "predictions": predictions,
        }
        return OrjsonResponse(body)

    return router


def _count(metrics: Metrics, classes: np.ndarray, version: str | None) -> None:
    severe = int(classes.sum())
    label = version or "unknown"
    if severe:
        metrics.predictions.labels("1", label).inc(severe)
    if len(classes) - severe:
        metrics.predictions.labels("0", label).inc(len(classes) - severe)
