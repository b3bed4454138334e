"""Drift results table (the drift job's verdicts, read by the API's gauges).

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02

Columns spelt out (a migration is history); tests/api/monitoring/test_log_writer.py checks that the migrated schema
equals accidents.store.drift_results.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer, "sqlite")


def upgrade() -> None:
    op.create_table(
        "drift_results",
        sa.Column("id", ID, primary_key=True, autoincrement=True),
        sa.Column("computed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("window_start", sa.DateTime(timezone=True), nullable=True),
        sa.Column("window_end", sa.DateTime(timezone=True), nullable=True),
        sa.Column("window_rows", sa.Integer, nullable=False),
        sa.Column("model_version", sa.String(64), nullable=True),
        sa.Column("reference_rows", sa.Integer, nullable=False),
        sa.Column("feature_scores", sa.JSON, nullable=False),
        sa.Column("drifted_features", sa.JSON, nullable=False),
        sa.Column("drifted_share", sa.Float, nullable=True),
        sa.Column("prediction_drift", sa.Float, nullable=True),
        sa.Column("verdict", sa.String(16), nullable=False),
        sa.Column("report_run_id", sa.String(64), nullable=True),
        sa.Column("method", sa.String(200), nullable=False),
    )
    op.create_index("ix_drift_results_computed_at", "drift_results", ["computed_at"])


def downgrade() -> None:
    op.drop_table("drift_results")
