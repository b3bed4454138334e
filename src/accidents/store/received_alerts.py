"""The received alerts table: what Alertmanager delivered to the API's receiver (`POST /monitoring/alerts`).

One row per alert (Alertmanager's fingerprint: a hash of its labels), upserted: the notification
that an alert fires inserts it, the one that says it resolved updates the same row, a later firing
of the same labels (a new `startsAt`) reopens it. Alertmanager retries a failed delivery and may
deliver an older notification after a newer one, so a row only moves forward: an older episode
(`startsAt` before the stored one) is ignored, and within one episode `resolved` is final. The
table lives in the prediction log's database beside the drift results (migration 0005); the
dashboard reads it through `GET /monitoring/alerts`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, Column, DateTime, Index, Integer, String, Table, and_, not_, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine

from accidents.store.prediction_log import ID_TYPE, metadata

STATUS_FIRING = "firing"
STATUS_RESOLVED = "resolved"
STATUSES = (STATUS_FIRING, STATUS_RESOLVED)
FINGERPRINT_MAX_LENGTH = 64  # Alertmanager's are 16 hex digits

received_alerts = Table(
    "received_alerts",
    metadata,
    Column("id", ID_TYPE, primary_key=True, autoincrement=True),
    Column("fingerprint", String(FINGERPRINT_MAX_LENGTH), nullable=False, unique=True),
    Column("alertname", String(200), nullable=False),
    Column("status", String(16), nullable=False),  # one of STATUSES: the latest notification's
    Column("severity", String(64), nullable=True),
    Column("labels", JSON, nullable=False),
    Column("annotations", JSON, nullable=False),
    Column("starts_at", DateTime(timezone=True), nullable=False),
    Column("ends_at", DateTime(timezone=True), nullable=True),  # set when resolved
    Column("generator_url", String(2000), nullable=True),
    Column("receiver", String(200), nullable=False),  # Alertmanager's receiver that sent it
    Column("first_received_at", DateTime(timezone=True), nullable=False),
    Column("last_received_at", DateTime(timezone=True), nullable=False),
    Column("notifications", Integer, nullable=False),  # deliveries that changed or confirmed the row
    Index("ix_received_alerts_last_received_at", "last_received_at"),
)


def _utc(moment: datetime | None) -> datetime | None:
    """Stored in UTC without a changing offset, so SQLite's text timestamps compare in time order."""
    if moment is None:
        return None
    return (moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)).astimezone(UTC)


def upsert(engine: Engine, alerts: list[dict[str, Any]], received_at: datetime | None = None) -> int:
    """Insert or move forward one row per alert (keys: the columns above, without ids and receive
    times); the number of rows inserted or changed (a stale notification changes none)."""
    now = _utc(received_at or datetime.now(UTC))
    changed = 0
    with engine.begin() as connection:
        for alert in alerts:
            values = {**alert, "starts_at": _utc(alert["starts_at"]), "ends_at": _utc(alert.get("ends_at"))}
            statement = _insert(engine)(received_alerts).values(
                **values, first_received_at=now, last_received_at=now, notifications=1
            )
            stored, new = received_alerts.c, statement.excluded
            newer_episode = new.starts_at > stored.starts_at
            same_episode = and_(new.starts_at == stored.starts_at,
                                not_(and_(stored.status == STATUS_RESOLVED, new.status == STATUS_FIRING)))  # fmt: skip
            statement = statement.on_conflict_do_update(
                index_elements=[stored.fingerprint],
                set_={
                    **{name: new[name] for name in values if name != "fingerprint"},
                    "last_received_at": new.last_received_at,
                    "notifications": stored.notifications + 1,
                },
                where=or_(newer_episode, same_episode),
            )
            changed += len(connection.execute(statement.returning(received_alerts.c.id)).all())
    return changed


def _insert(engine: Engine) -> Any:
    """The dialect's INSERT with ON CONFLICT (PostgreSQL and SQLite, the two stores of the log)."""
    return postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert


def recent(engine: Engine, limit: int = 50) -> list[dict[str, Any]]:
    """Firing alerts first, then by the latest notification, newest first."""
    firing_first = (received_alerts.c.status == STATUS_FIRING).desc()
    query = (
        select(received_alerts)
        .order_by(firing_first, received_alerts.c.last_received_at.desc(), received_alerts.c.id.desc())
        .limit(limit)
    )
    with engine.connect() as connection:
        return [dict(row) for row in connection.execute(query).mappings().all()]
