"""POST /v2/predict: accident reports (accidents.report_time.contract) -> the report-time model's rows.

The body is one accident (`AccidentReport`) or a batch (`ReportBatch`, {"accidents": [...]}),
validated by the contract's own pydantic models (strict codes, unknown fields refused, outcomes
refused with the reason); every problem becomes a 422 in /predict's shape (api.serving.prediction:
`loc` from "body" to the field, `msg`, `type`). The batch limit is checked before any validation.
The rows come from `accident_features(tables_from_reports(...))`, the function the pipeline's
training rows go through (numpy only: no pandas in the serving process).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from pydantic import BaseModel, TypeAdapter, ValidationError

from accidents.report_time.contract import OUTCOME_FIELDS, REPORT_EXAMPLE, AccidentReport, ReportBatch
from accidents.report_time.features import REPORT_FEATURES, accident_features, tables_from_reports
from api.serving.prediction import MAX_REPORTED_PROBLEMS, PayloadError, Problem, _load_json

BATCH_FIELD = "accidents"
LOGGED_FEATURES = REPORT_FEATURES  # the names of report_rows' columns, logged with each row
VALUE_ERROR_PREFIX = "Value error, "


def parse_reports(body: bytes, max_accidents: int) -> list[BaseModel]:
    """The validated reports of a /v2/predict body (one accident or a batch); PayloadError naming
    every problem's field otherwise."""
    payload = _load_json(body)
    if not isinstance(payload, dict):
        raise PayloadError([Problem((), "expected a JSON object: one accident report, or "
                                        '{"accidents": [report, ...]}', "type_error")])  # fmt: skip
    batch = payload.get(BATCH_FIELD)
    if isinstance(batch, list) and len(batch) > max_accidents:
        msg = f"batch of {len(batch)} accidents is larger than the limit of {max_accidents}"
        raise PayloadError([Problem((BATCH_FIELD,), msg, "too_long")])
    try:
        if BATCH_FIELD in payload:
            return list(ReportBatch.model_validate(payload).accidents)
        return [AccidentReport.model_validate(payload)]
    except ValidationError as error:
        errors = error.errors(include_url=False)[:MAX_REPORTED_PROBLEMS]
        raise PayloadError([_problem(item) for item in errors]) from None


def _problem(error: Any) -> Problem:
    """One pydantic error as /predict reports it: the location ends with the field's name, and the
    message names it (an outcome field is located at the field, not at the object carrying it)."""
    loc = tuple(error["loc"])
    msg = error["msg"].removeprefix(VALUE_ERROR_PREFIX)
    given = error.get("input")
    if error["type"] == "value_error" and isinstance(given, dict):
        outcomes = sorted(set(given) & set(OUTCOME_FIELDS))
        if outcomes:
            return Problem((*loc, outcomes[0]), msg, "outcome_forbidden")
    name = next((part for part in reversed(loc) if isinstance(part, str)), None)
    if error["type"] == "missing" and name is not None:
        msg = f"{name} is missing"
    elif name is not None and not msg.startswith(name):
        msg = f"{name}: {msg}"
    return Problem(loc, msg, error["type"])


def report_rows(reports: Sequence[BaseModel]) -> np.ndarray:
    """(n, 95) float64 rows in REPORT_FEATURES order, one per report (NaN: missing)."""
    return accident_features(tables_from_reports(reports))


def score_reports(predict_proba: Any, reports: Sequence[BaseModel]) -> tuple[np.ndarray, np.ndarray]:
    """Features and probabilities in one call (one hop to the inference thread): the rows (for
    the prediction log) and their probabilities."""
    rows = report_rows(reports)
    return rows, predict_proba(rows)


def report_body_schema(max_accidents: int) -> dict[str, Any]:
    """OpenAPI requestBody of /v2/predict (parsed by hand, so declared here): the contract's own
    JSON schema; its `$defs` become components (api.openapi.complete_openapi)."""
    schema = TypeAdapter(AccidentReport | ReportBatch).json_schema(ref_template="#/components/schemas/{model}")
    schema["$defs"]["ReportBatch"]["properties"][BATCH_FIELD]["maxItems"] = max_accidents
    examples = {
        "one": {"summary": "one real 2021 accident (Num_Acc 202100000002, two cars)", "value": REPORT_EXAMPLE},
        "batch": {"summary": "a batch", "value": {BATCH_FIELD: [REPORT_EXAMPLE, REPORT_EXAMPLE]}},
    }
    return {"required": True, "content": {"application/json": {"schema": schema, "examples": examples}}}
