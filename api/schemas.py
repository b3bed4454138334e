"""Request and response bodies (pydantic), and the /predict body's OpenAPI schema from the contract."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, create_model, field_validator

from accidents.features import FEATURE_NAMES, FEATURES, N_FEATURES, SEED_EXAMPLE
from accidents.report_time.features import REPORT_FEATURES
from accidents.report_time.provenance import field_credit
from api.core.config import USERNAME_PATTERN
from api.db.models import Role
from api.serving.accident_ids import ID_FIELD, ID_PATTERN, MAX_INTEGER_ID


class Token(BaseModel):
    access_token: str
    token_type: str = "bearer"  # noqa: S105 - the OAuth2 token type, not a secret
    expires_in: int = Field(description="seconds")


class UserOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    username: str
    role: Role
    disabled: bool
    created_at: datetime
    password_changed_at: datetime

    @field_validator("created_at", "password_changed_at")
    @classmethod
    def _in_utc(cls, value: datetime) -> datetime:
        """SQLite returns the stored UTC times without their offset: say they are UTC (RFC 3339 date-time)."""
        return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


class UserCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    username: str = Field(pattern=USERNAME_PATTERN)
    password: str = Field(min_length=1, max_length=256)
    role: Role = Role.USER


class UserUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Role | None = None
    disabled: bool | None = None
    password: str | None = Field(default=None, min_length=1, max_length=256, description="reset (revokes tokens)")


class PasswordChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    current_password: str = Field(max_length=256)
    new_password: str = Field(min_length=1, max_length=256)


class Message(BaseModel):
    detail: str


class RowPrediction(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    predicted_class: int = Field(alias="class", description="1: at least one person killed or hospitalised")
    probability: float = Field(description="probability of the severe class")
    threshold: float = Field(description="decision threshold: class = probability >= threshold")
    model_version: str | None


class Contribution(BaseModel):
    feature: str = Field(description="contract name of the request input (descriptions: `Contributions`)")
    value: float | None = Field(description="the input's value in this request (null: missing)")
    contribution: float = Field(description="its SHAP contribution to the raw score, in log-odds")


# One field per contract input, with its official description: the schema documents every name.
Contributions = create_model(
    "Contributions",
    __doc__="Every input's SHAP contribution (log-odds); derived inputs mapped back onto the input they "
    "come from (`com` and `dep` include their target encodings).",
    **{feature.name: (float, Field(description=feature.description)) for feature in FEATURES},
)


class Explanation(BaseModel):
    base_value: float = Field(description="expected raw score (log-odds) over the training rows")
    raw_score: float = Field(description="this row's raw score (log-odds): base_value + sum of contributions")
    top: list[Contribution] = Field(description="largest contributions by absolute value, largest first")
    contributions: Contributions  # type: ignore[valid-type]


class ExplainedRowPrediction(RowPrediction):
    explanation: Explanation | None = Field(None, description="with ?explain=true: exact TreeSHAP of this row")


class PredictResponse(BaseModel):
    model_version: str | None
    threshold: float
    data_source: str
    predictions: list[ExplainedRowPrediction]


class FieldContribution(BaseModel):
    field: str = Field(description="a report field's path (`ReportFieldContributions`)")
    contribution: float = Field(description="its SHAP contribution to the raw score, in log-odds")


# One field per report field path and per report-time feature: the schema documents every name.
ReportFieldContributions = create_model(
    "ReportFieldContributions",
    __doc__="Every report field's SHAP contribution (log-odds): each feature's contribution shared equally "
    "between the fields it reports on (accidents.report_time.provenance); a list's own entry "
    "(`vehicles`, `vehicles[].users`) is what their number contributes.",
    **{f"field_{i}": (float, Field(alias=path, description=description))
       for i, (path, description) in enumerate(field_credit().descriptions.items())},
)  # fmt: skip
ReportFeatureContributions = create_model(
    "ReportFeatureContributions",
    __doc__="Every report-time feature's SHAP contribution (log-odds), `com` and `dep` with their encodings.",
    **{f"feature_{i}": (float, Field(alias=name, description=field_credit().describe_feature(name)))
       for i, name in enumerate(REPORT_FEATURES)},
)  # fmt: skip


class ReportExplanation(BaseModel):
    base_value: float = Field(description="expected raw score (log-odds) over the training rows")
    raw_score: float = Field(description="this accident's raw score (log-odds): base_value + sum of contributions")
    top: list[FieldContribution] = Field(description="report fields with the largest contributions, largest first")
    fields: ReportFieldContributions  # type: ignore[valid-type]
    features: ReportFeatureContributions  # type: ignore[valid-type]


class ReportRowPrediction(RowPrediction):
    accident_id: str | None = Field(None, description="the report's accident_id (BAAC Num_Acc), when it carried one")
    explanation: ReportExplanation | None = Field(
        None, description="with ?explain=true: exact TreeSHAP of this accident, by report field and by feature"
    )


class ReportPredictResponse(BaseModel):
    """POST /v2/predict: one prediction per accident report, in the request's order."""

    model_version: str | None = Field(description="version of the registered model accidents-report-time")
    threshold: float
    data_source: str
    predictions: list[ReportRowPrediction]


class ChallengerInfo(BaseModel):
    version: str | None
    run_id: str | None
    threshold: float
    data_source: str
    trained_at: str
    model_family: str
    metrics: dict[str, float]
    loaded_at: str


class ReportModelInfo(BaseModel):
    """The report-time model as served (accidents-report-time, POST /v2/predict, issue #25)."""

    model_name: str
    loaded: bool = Field(description="false: no version anywhere (/v2/predict answers 503)")
    version: str | None
    run_id: str | None
    threshold: float | None
    data_source: str | None
    synthetic: bool
    warning: str | None = None
    trained_at: str | None
    model_family: str | None
    metrics: dict[str, float]
    source: str | None = Field(description="registry, or local (the pipeline's local copy)")
    degraded: bool = Field(description="true while MLflow is unreachable and the local copy serves")
    loaded_at: str | None
    last_check: dict[str, Any] | None
    shadow_enabled: bool = Field(description="SHADOW_ENABLED: its challenger is scored in the shadow of /v2/predict")
    challenger: ChallengerInfo | None = Field(None, description="accidents-report-time@challenger, loaded")


class ModelInfo(BaseModel):
    model_name: str
    version: str | None
    run_id: str | None
    threshold: float
    data_source: str
    synthetic: bool
    warning: str | None = None
    trained_at: str
    model_family: str
    metrics: dict[str, float]
    source: str = Field(description="registry, or local (the pipeline's local champion copy)")
    degraded: bool = Field(description="true while MLflow is unreachable and the local copy serves")
    loaded_at: str
    tracking_uri: str
    last_check: dict[str, Any] | None
    shadow_enabled: bool = Field(False, description="SHADOW_ENABLED: a challenger is scored in the shadow")
    challenger: ChallengerInfo | None = Field(None, description="the registry's challenger loaded beside the champion")
    report_model: ReportModelInfo | None = Field(None, description="the report-time model (POST /v2/predict) and "
                                                 "its challenger; null when REPORT_MODEL_ENABLED=false")  # fmt: skip


class RetrainRunOut(BaseModel):
    run_id: str
    state: str
    orchestrator: str
    started_at: str | None
    finished_at: str | None
    detail: str
    tasks: list[dict[str, Any]]
    reason: str = Field(description="why the run started: 'manual: <admin>', 'drift: ...', 'performance: ...', ...")
    promoted: bool | None = Field(None, description="when done: did this run promote a new champion")
    champion_version: str | None = None
    status_url: str


ACCIDENT_ID_SCHEMA = {
    "anyOf": [
        {"type": "string", "pattern": ID_PATTERN},
        {"type": "integer", "minimum": 0, "maximum": MAX_INTEGER_ID},
        {"type": "null"},
    ],
    "description": "optional: the accident's BAAC Num_Acc, kept in the prediction log to join labels later",
}


def predict_body_schema(max_rows: int) -> dict[str, Any]:
    """OpenAPI requestBody for /predict (parsed by hand with orjson, so declared here)."""
    named = {
        "type": "object",
        "title": "NamedRow",
        "properties": {
            **{feature.name: feature.json_schema() for feature in FEATURES},
            ID_FIELD: ACCIDENT_ID_SCHEMA,
        },
        "required": list(FEATURE_NAMES),
        "additionalProperties": False,
    }
    ordered = {
        "type": "array",
        "title": "OrderedRow",
        "prefixItems": [feature.json_schema() for feature in FEATURES],
        "items": False,
        "minItems": N_FEATURES,
        "maxItems": N_FEATURES,
        "description": "values in contract order: " + ", ".join(FEATURE_NAMES),
    }
    with_id = {
        "type": "object",
        "title": "Features",
        "properties": {"features": ordered, ID_FIELD: ACCIDENT_ID_SCHEMA},
        "required": ["features"],
        "additionalProperties": False,
    }
    schema = {
        "oneOf": [
            with_id,
            named,
            {
                "type": "object",
                "title": "Batch",
                "properties": {
                    "instances": {
                        "type": "array",
                        "minItems": 1,
                        "maxItems": max_rows,
                        "items": {"oneOf": [ordered, named, with_id]},
                    }
                },
                "required": ["instances"],
                "additionalProperties": False,
            },
        ]
    }
    examples = {
        "seed": {"summary": "the seed's list of 28 values", "value": {"features": list(SEED_EXAMPLE)}},
        "named": {"summary": "one row by name", "value": dict(zip(FEATURE_NAMES, SEED_EXAMPLE, strict=True))},
        "batch": {"summary": "a batch", "value": {"instances": [list(SEED_EXAMPLE), list(SEED_EXAMPLE)]}},
        "with_ids": {
            "summary": "accident ids (BAAC Num_Acc) for the prediction log",
            "value": {"instances": [{"features": list(SEED_EXAMPLE), "accident_id": "202100000001"}]},
        },
    }
    return {"required": True, "content": {"application/json": {"schema": schema, "examples": examples}}}


class PromoteRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    override: bool = Field(False, description="promote even when the promotion rule (params.yaml) says no, or "
                           "cannot judge yet (no labelled shadow rows): recorded in the audit")  # fmt: skip
    reason: str | None = Field(None, max_length=500, description="why (kept in the audit tags)")


class DifferenceInterval(BaseModel):
    difference: float = Field(description="challenger minus champion on the labelled shadow rows")
    low: float
    high: float


class PromotionIntervals(BaseModel):
    """The paired bootstrap intervals the label job recorded (accidents.model.bootstrap)."""

    unavailable: str | None = Field(None, description="why there is no interval (then no bounds)")
    rows: int | None = Field(None, description="labelled shadow rows both models were graded on")
    rounds: int | None = None
    level: float | None = Field(None, description="0.95")
    job_id: str | None = Field(None, description="the label job whose realized grades they go with")
    roc_auc: DifferenceInterval | None = None
    f1: DifferenceInterval | None = None


class PromoteResponse(BaseModel):
    promoted_version: str
    previous_champion: str | None
    rule: str | None = Field(description="promotion.rule of params.yaml: margin | interval (None: no realized "
                             "grades to judge, params.yaml not read)")  # fmt: skip
    rule_applied: bool = Field(description="false: no realized AUC/F1 of both models on labelled shadow rows yet, "
                               "or rule interval without an interval")  # fmt: skip
    rule_promotes: bool | None
    rule_reason: str
    override: bool
    evidence: dict[str, Any] | None
    intervals: PromotionIntervals = Field(description="paired bootstrap 95 % intervals of the AUC and F1 differences "
                                          "on the labelled shadow rows, reported under either rule")  # fmt: skip
    audit_tags: dict[str, str] = Field(description="tags set on the promoted model version in MLflow")
    warnings: list[str] = Field(default=[], description="registry writes that failed after the alias moved")
    model: str = Field("seed", description="whose challenger: seed (/predict's) or report_time (/v2/predict's)")
    model_name: str | None = Field(None, description="its registered model, where the aliases moved")


class DropResponse(BaseModel):
    dropped_version: str | None
    audit_tags: dict[str, str]
    model: str = Field("seed", description="whose challenger: seed (/predict's) or report_time (/v2/predict's)")
    model_name: str | None = Field(None, description="its registered model")
