"""POST /v2/predict: accident reports (accidents.report_time.contract) -> the report-time model's rows.

The body is one accident (`AccidentReport`) or a batch (`ReportBatch`, {"accidents": [...]}),
validated by the contract's own pydantic models (strict codes, unknown fields refused, outcomes
refused with the reason); every problem becomes a 422 in /predict's shape (api.serving.prediction:
`loc` from "body" to the field, `msg`, `type`). The batch limit is checked before any validation.
The rows come from `accident_features` of the reports' `Tables`, the function the pipeline's
training rows go through (numpy only: no pandas in the serving process).

A batch of VECTORIZED_MIN_ACCIDENTS or more first goes through `tables_from_bodies`
(accidents.report_time.bodies): the same rules in a few list and numpy passes, straight from the
parsed JSON to Tables, without a pydantic object per accident, vehicle and user. It only says yes
or no; anything it does not take goes through the models, which name every problem.

The cyclic garbage collector is paused while a body is parsed: the JSON of 1,000 accidents is
~8,700 dicts and lists that live through the parse, so collections run every 700 of them, move
them to the old generation and regularly trigger a full collection, which walks the API's whole
heap (~250,000 objects). The parse makes no cycle; it is freed by reference counting on return.
Measured in process, 1,000 real 2021 accidents, beside the API's heap (min / median of 40, shared
2-core machine): `parse_reports` 54 / 60 ms before, validation only (the Tables then took 17 / 20
ms more in `score_reports`), the collector 55 ms a call on average (full collections walking the
heap); now 10.6 / 12.0 ms with the Tables, the collector nothing. In the benchmark
(bench/report_route.py, bench/results/2026-12-06-report-route.md): 1,000 accidents p50 45.2 ms,
2.00x the seed route's 1,000 rows per row (129 ms, 4.87x before); one accident p50 1.39 ms.
"""

from __future__ import annotations

import gc
from typing import Any

import numpy as np
from pydantic import TypeAdapter, ValidationError

from accidents.report_time.bodies import tables_from_bodies
from accidents.report_time.contract import OUTCOME_FIELDS, REPORT_EXAMPLE, AccidentReport, ReportBatch
from accidents.report_time.features import REPORT_FEATURES, Tables, accident_features, tables_from_reports
from api.serving.prediction import MAX_REPORTED_PROBLEMS, PayloadError, Problem, _load_json

BATCH_FIELD = "accidents"
LOGGED_FEATURES = REPORT_FEATURES  # the names of report_rows' columns, logged with each row
VALUE_ERROR_PREFIX = "Value error, "
# From this many accidents on, `tables_from_bodies` first (measured: it costs ~0.35 ms whatever the
# size, the models and `tables_from_reports` ~0.055 ms an accident; they cross at ~7).
VECTORIZED_MIN_ACCIDENTS = 8


def parse_reports(body: bytes, max_accidents: int) -> Tables:
    """The validated reports of a /v2/predict body (one accident or a batch) as Tables, one
    accident per report in order; PayloadError naming every problem's field otherwise.

    The cyclic garbage collector is paused meanwhile (see the module docstring): the parsed JSON
    makes no cycle and is freed by reference counting when `_parse` returns, before it resumes."""
    collecting = gc.isenabled()
    gc.disable()
    try:
        return _parse(body, max_accidents)
    finally:
        if collecting:
            gc.enable()


def _parse(body: bytes, max_accidents: int) -> Tables:
    payload = _load_json(body)
    if not isinstance(payload, dict):
        raise PayloadError([Problem((), "expected a JSON object: one accident report, or "
                                        '{"accidents": [report, ...]}', "type_error")])  # fmt: skip
    batch = payload.get(BATCH_FIELD)
    if isinstance(batch, list) and len(batch) > max_accidents:
        msg = f"batch of {len(batch)} accidents is larger than the limit of {max_accidents}"
        raise PayloadError([Problem((BATCH_FIELD,), msg, "too_long")])
    if (type(batch) is list and len(batch) >= VECTORIZED_MIN_ACCIDENTS and len(payload) == 1
            and (tables := tables_from_bodies(batch)) is not None):  # fmt: skip
        return tables
    try:
        if BATCH_FIELD in payload:
            reports = ReportBatch.model_validate(payload).accidents
        else:
            reports = [AccidentReport.model_validate(payload)]
    except ValidationError as error:
        errors = error.errors(include_url=False)[:MAX_REPORTED_PROBLEMS]
        raise PayloadError([_problem(item) for item in errors]) from None
    return tables_from_reports(reports)


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


def report_rows(tables: Tables) -> np.ndarray:
    """(n, 95) float64 rows in REPORT_FEATURES order, one per accident (NaN: missing)."""
    return accident_features(tables)


def score_reports(predict_proba: Any, tables: Tables) -> tuple[np.ndarray, np.ndarray]:
    """Features and probabilities in one call (one hop to the inference thread): the rows (for
    the prediction log) and their probabilities."""
    rows = report_rows(tables)
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
