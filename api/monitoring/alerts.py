"""Alerts Alertmanager delivers to the API (`POST /monitoring/alerts`, api/routes/alerts.py): the
webhook payload (version 4) as pydantic validates it, the rows it becomes in the store
(accidents.store.received_alerts), the counter `/metrics` exports, and what the dashboard reads.

Bounds: Alertmanager sends at most `max_alerts` alerts per notification (100 in
deploy/alertmanager/alertmanager.yml), ~0.6 KB each for our rules, so a notification is far under
the receiver's body limit (ALERTS_MAX_BODY_BYTES, 256 KiB); anything larger or malformed is
refused with a 4xx before it reaches the store.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from prometheus_client import CollectorRegistry, Counter
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, field_validator

from accidents.store.received_alerts import FINGERPRINT_MAX_LENGTH, STATUS_RESOLVED
from api.monitoring.schemas import IsoDateTime, StoredTime

MAX_ALERTS = 1000  # per notification (Alertmanager's own cap is configured to 100)
MAX_LABELS = 64
Status = Literal["firing", "resolved"]
LabelName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,199}$")]
ShortText = Annotated[str, StringConstraints(max_length=200)]
Text = Annotated[str, StringConstraints(max_length=2000)]
Labels = Annotated[dict[LabelName, Text], Field(max_length=MAX_LABELS)]


def _no_zero_time(value: datetime) -> datetime | None:
    """Alertmanager writes Go's zero time (0001-01-01T00:00:00Z) for an alert with no end yet."""
    return None if value.year == 1 else value


class WebhookAlert(BaseModel):
    model_config = ConfigDict(extra="ignore")

    status: Status
    labels: Labels
    annotations: Labels = Field(default_factory=dict)
    startsAt: IsoDateTime  # noqa: N815 - Alertmanager's field names
    endsAt: Annotated[IsoDateTime, AfterValidator(_no_zero_time)] | None = None  # noqa: N815
    generatorURL: Text = ""  # noqa: N815
    fingerprint: Annotated[str, StringConstraints(pattern=rf"^[0-9a-f]{{1,{FINGERPRINT_MAX_LENGTH}}}$")]

    @field_validator("labels")
    @classmethod
    def _named(cls, labels: dict[str, str]) -> dict[str, str]:
        if not labels.get("alertname"):
            raise ValueError("labels must include a non-empty alertname")
        if len(labels["alertname"]) > 200:
            raise ValueError("alertname longer than 200 characters")
        return labels


class WebhookPayload(BaseModel):
    """Alertmanager's webhook notification, version 4 (its docs: configuration, webhook_config)."""

    model_config = ConfigDict(extra="ignore")

    version: Literal["4"]
    status: Status
    receiver: ShortText
    groupKey: Text = ""  # noqa: N815
    truncatedAlerts: int = Field(default=0, ge=0)  # noqa: N815
    groupLabels: Labels = Field(default_factory=dict)  # noqa: N815
    commonLabels: Labels = Field(default_factory=dict)  # noqa: N815
    commonAnnotations: Labels = Field(default_factory=dict)  # noqa: N815
    externalURL: Text = ""  # noqa: N815
    alerts: list[WebhookAlert] = Field(min_length=1, max_length=MAX_ALERTS)


def store_rows(payload: WebhookPayload) -> list[dict[str, Any]]:
    """One row per alert, in the columns of accidents.store.received_alerts."""
    return [
        {
            "fingerprint": alert.fingerprint,
            "alertname": alert.labels["alertname"],
            "status": alert.status,
            "severity": alert.labels.get("severity"),
            "labels": alert.labels,
            "annotations": alert.annotations,
            "starts_at": alert.startsAt,
            "ends_at": alert.endsAt if alert.status == STATUS_RESOLVED else None,
            "generator_url": alert.generatorURL or None,
            "receiver": payload.receiver,
        }
        for alert in payload.alerts
    ]


class ReceivedAlert(BaseModel):
    """An alert as the receiver stored it (GET /monitoring/alerts)."""

    fingerprint: str
    alertname: str
    status: Status = Field(description="of the latest notification: firing, or resolved (final for its episode)")
    severity: str | None
    labels: dict[str, str]
    annotations: dict[str, str]
    starts_at: StoredTime
    ends_at: StoredTime | None
    generator_url: str | None
    receiver: str
    first_received_at: StoredTime
    last_received_at: StoredTime
    notifications: int


class ReceiverAnswer(BaseModel):
    received: int = Field(description="alerts in the notification")
    changed: int = Field(
        description="rows inserted or updated (a stale notification, older than the stored one, changes none)"
    )


class AlertMetrics:
    """alerts_received_total{alertname,status}: alerts delivered by Alertmanager, per notification."""

    def __init__(self, registry: CollectorRegistry):
        self.received = Counter("alerts_received", "Alerts delivered to POST /monitoring/alerts by Alertmanager",
                                ["alertname", "status"], registry=registry)  # fmt: skip

    def count(self, payload: WebhookPayload) -> None:
        for alert in payload.alerts:
            self.received.labels(alert.labels["alertname"], alert.status).inc()
