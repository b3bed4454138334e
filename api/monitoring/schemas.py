"""What the monitoring routes answer: response models, and the date-time and version types their
parameters and stored times use."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated

from pydantic import AfterValidator, BaseModel, BeforeValidator, Field

VERSION_PATTERN = r"^[A-Za-z0-9._-]{1,64}$"
MAX_BUCKETS = 500  # volume periods one prediction-stats answer holds


def _iso_only(value: object) -> object:
    """Pydantic reads "170" as a Unix timestamp; the parameter is documented (and meant) as ISO 8601."""
    if isinstance(value, str) and re.fullmatch(r"\s*[+-]?[\d.]+(e[+-]?\d+)?\s*", value, flags=re.IGNORECASE):
        raise ValueError("expected an ISO 8601 date-time (e.g. 2026-12-01T00:00:00Z), not a number")
    return value


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _in_utc(value: datetime) -> datetime:
    """The moment in UTC. One that leaves datetime's range once converted (0001-01-01T00:00+01:00,
    9999-12-31T23:59-01:00) is a valid ISO 8601 date-time: it is read as the first or last moment
    datetime holds (as bounds of a window they select the same rows), never an OverflowError (500)."""
    try:
        return _utc(value).astimezone(UTC)
    except OverflowError:
        return (datetime.min if value.year == datetime.min.year else datetime.max).replace(tzinfo=UTC)


IsoDateTime = Annotated[datetime, BeforeValidator(_iso_only), AfterValidator(_in_utc)]
# A time read back from the store: UTC, which SQLite returns without its offset.
StoredTime = Annotated[datetime, AfterValidator(_utc)]


class LoggedPrediction(BaseModel):
    id: int
    logged_at: StoredTime
    request_id: str
    model_version: str | None
    model_source: str
    caller_role: str
    accident_id: str | None
    features: dict[str, float | None] = Field(description="the 28 values as received after validation")
    probability: float
    predicted_class: int = Field(description="1: at least one person killed or hospitalised")
    threshold: float


class PredictionPage(BaseModel):
    items: list[LoggedPrediction] = Field(description="newest first")
    next_before_id: int | None = Field(description="pass as before_id for the next (older) page; null: last page")


class RealizedResult(BaseModel):
    model: str = Field(description="whose logged rows: seed (/predict) or report_time (/v2/predict)")
    model_version: str
    month: str | None = Field(description="YYYY-MM of the accidents; null: all months")
    computed_at: StoredTime
    job_id: str
    rows_logged: int
    rows_labelled: int
    rows_unlabelled: int
    roc_auc: float | None
    f1: float | None
    precision: float | None
    recall: float | None
    positive_rate: float | None
    predicted_positive_rate: float | None
    mean_probability: float | None
    brier: float | None
    ece: float | None
    label_source: str
    mlflow_run_id: str | None


class DriftResult(BaseModel):
    id: int
    computed_at: StoredTime
    window_start: StoredTime | None = Field(description="logged_at of the window's oldest prediction")
    window_end: StoredTime | None = Field(description="logged_at of the window's newest prediction")
    window_rows: int
    model: str = Field(description="whose traffic: seed (/predict) or report_time (/v2/predict)")
    model_version: str | None = Field(description="the model version that served the window")
    reference_rows: int = Field(description="rows of that version's training reference compared with")
    feature_scores: dict[str, float | None] = Field(description="drift score per compared feature (higher: more drift)")
    drifted_features: list[str]
    drifted_share: float | None
    prediction_drift: float | None = Field(description="drift score of the predicted probabilities")
    verdict: str = Field(description="drift | no_drift | not_enough_data")
    report_run_id: str | None = Field(description="MLflow run (experiment `monitoring`) holding the HTML report")
    method: str


class RealizedGrade(BaseModel):
    roc_auc: float | None
    f1: float | None
    precision: float | None
    recall: float | None
    rows_labelled: int
    rows_unlabelled: int
    computed_at: StoredTime


class ShadowRealized(BaseModel):
    job_id: str
    challenger: RealizedGrade | None = None
    champion: RealizedGrade | None = None


class ShadowComparison(BaseModel):
    challenger_version: str | None
    champion_version: str | None
    rows: int = Field(description="shadow rows logged: live rows scored by both models")
    agreement_rate: float = Field(description="share of those rows where both predict the same class")
    challenger_positive_rate: float
    champion_positive_rate: float
    positive_rate_difference: float = Field(description="challenger minus champion")
    first_logged_at: StoredTime
    last_logged_at: StoredTime
    realized: ShadowRealized | None = Field(description="label job: both graded on the same labelled shadow rows")


class VersionStats(BaseModel):
    model_version: str | None
    rows: int
    predicted_positive: int
    mean_probability: float
    first_logged_at: StoredTime
    last_logged_at: StoredTime
    histogram: list[int] = Field(description="rows per probability bin: [0, 1/bins), ..., [1 - 1/bins, 1]")


class VolumeBucket(BaseModel):
    bucket: str = Field(description="UTC period start: YYYY-MM-DD[ HH[:MM]]")
    model_version: str | None
    rows: int


class PredictionStats(BaseModel):
    since: datetime
    until: datetime | None
    bins: int
    rows: int
    versions: list[VersionStats] = Field(description="per model version, the most served first")
    volume: list[VolumeBucket] = Field(description=f"rows per period and version, oldest first (last {MAX_BUCKETS})")


class PipelineRun(BaseModel):
    run_id: str
    run_name: str | None
    model: str = Field(
        description="which model the run trained: seed | report_time (its `model` tag; seed "
        "for runs from before the report-time model)"
    )
    status: str
    started_at: datetime | None
    ended_at: datetime | None
    reason: str | None = Field(description="why it ran: the run's `run_reason` tag (the DAG's conf, a shell)")
    promotion: str | None = Field(description="promoted | rejected (evaluate stage)")
    promotion_reason: str | None
    test_roc_auc: float | None
    test_f1: float | None


class PipelineRuns(BaseModel):
    runs: list[PipelineRun] = Field(description="newest first")
    available: bool = Field(description="false: MLflow could not be read (runs is empty, detail says why)")
    detail: str | None = None


# --- estimated performance (GET /monitoring/estimates) ------------------------------------------


class EstimatedPerformance(BaseModel):
    id: int
    computed_at: StoredTime
    model: str = Field(description="whose traffic: seed (/predict) or report_time (/v2/predict)")
    model_version: str | None = Field(description="the model version that served the window")
    window_start: StoredTime | None = Field(description="logged_at of the window's oldest prediction")
    window_end: StoredTime | None = Field(description="logged_at of the window's newest prediction")
    window_rows: int
    roc_auc: float = Field(description="estimated ROC AUC (CBPE, before labels)")
    f1: float = Field(description="estimated F1 at the version's threshold")
    precision: float
    recall: float
    positive_rate: float = Field(description="estimated share of severe accidents")
    predicted_positive_rate: float = Field(description="observed share predicted severe")
    threshold: float
    calibration_ece_raw: float | None = Field(description="ECE of the calibration set's raw probabilities")
    calibration_ece_isotonic: float | None = Field(description="ECE after isotonic calibration")
    method: str
    mlflow_run_id: str | None
    graded_at: StoredTime | None = Field(description="when the label job graded the window (null: no label yet)")
    realized_rows: int | None = Field(description="window rows joined with a label")
    realized_auc: float | None
    realized_f1: float | None
    auc_error: float | None = Field(description="estimated − realized ROC AUC")
    f1_error: float | None = Field(description="estimated − realized F1")
