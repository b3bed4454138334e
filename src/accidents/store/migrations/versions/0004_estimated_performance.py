"""Estimated performance table (the CBPE estimate of each monitoring window, graded once labels arrive).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04

One row per run of the estimation job (accidents.monitoring.estimation) beside `drift_results`;
the realized_* and *_error columns stay NULL until the label job (accidents.monitoring.realized)
grades the same rows. Columns spelt out (a migration is history); tests/api/monitoring/test_log_writer.py
checks that the migrated schema equals accidents.store.estimates.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer, "sqlite")


def upgrade() -> None:
    op.create_table(
        "estimated_performance",
        sa.Column("id", ID, primary_key=True, autoincrement=True),
        sa.Column("computed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("model_version", sa.String(64), nullable=True),
        sa.Column("window_start", sa.DateTime(timezone=True), nullable=True),
        sa.Column("window_end", sa.DateTime(timezone=True), nullable=True),
        sa.Column("window_rows", sa.Integer, nullable=False),
        sa.Column("roc_auc", sa.Float, nullable=False),
        sa.Column("f1", sa.Float, nullable=False),
        sa.Column("precision", sa.Float, nullable=False),
        sa.Column("recall", sa.Float, nullable=False),
        sa.Column("positive_rate", sa.Float, nullable=False),
        sa.Column("predicted_positive_rate", sa.Float, nullable=False),
        sa.Column("threshold", sa.Float, nullable=False),
        sa.Column("calibration_ece_raw", sa.Float, nullable=True),
        sa.Column("calibration_ece_isotonic", sa.Float, nullable=True),
        sa.Column("method", sa.String(200), nullable=False),
        sa.Column("mlflow_run_id", sa.String(64), nullable=True),
        sa.Column("graded_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("realized_rows", sa.Integer, nullable=True),
        sa.Column("realized_auc", sa.Float, nullable=True),
        sa.Column("realized_f1", sa.Float, nullable=True),
        sa.Column("auc_error", sa.Float, nullable=True),
        sa.Column("f1_error", sa.Float, nullable=True),
    )
    op.create_index("ix_estimated_performance_computed_at", "estimated_performance", ["computed_at"])


def downgrade() -> None:
    op.drop_table("estimated_performance")
