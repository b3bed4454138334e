"""Received alerts table (what Alertmanager delivered to POST /monitoring/alerts).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04

One row per alert fingerprint, upserted (accidents.store.received_alerts). Columns spelt out (a
migration is history); tests/api/monitoring/test_log_writer.py checks that the migrated schema
equals the declared tables.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer, "sqlite")


def upgrade() -> None:
    op.create_table(
        "received_alerts",
        sa.Column("id", ID, primary_key=True, autoincrement=True),
        sa.Column("fingerprint", sa.String(64), nullable=False, unique=True),
        sa.Column("alertname", sa.String(200), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("severity", sa.String(64), nullable=True),
        sa.Column("labels", sa.JSON, nullable=False),
        sa.Column("annotations", sa.JSON, nullable=False),
        sa.Column("starts_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ends_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("generator_url", sa.String(2000), nullable=True),
        sa.Column("receiver", sa.String(200), nullable=False),
        sa.Column("first_received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("notifications", sa.Integer, nullable=False),
    )
    op.create_index("ix_received_alerts_last_received_at", "received_alerts", ["last_received_at"])


def downgrade() -> None:
    op.drop_table("received_alerts")
