"""Prediction log and realized performance tables.

Revision ID: 0001
Revises:
Create Date: 2026-12-01

Columns are spelt out here (a migration is history: later changes of the tables get their own
revision); tests/api/monitoring/test_log_writer.py checks that the migrated schema equals
accidents.store.prediction_log.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from accidents.features import FEATURE_NAMES

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer, "sqlite")


def upgrade() -> None:
    op.create_table(
        "prediction_log",
        sa.Column("id", ID, primary_key=True, autoincrement=True),
        sa.Column("logged_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("request_id", sa.String(32), nullable=False),
        sa.Column("model_version", sa.String(64), nullable=True),
        sa.Column("model_source", sa.String(16), nullable=False),
        sa.Column("caller_role", sa.String(16), nullable=False),
        sa.Column("accident_id", sa.String(20), nullable=True),
        *(sa.Column(name, sa.Float, nullable=True) for name in FEATURE_NAMES),
        sa.Column("probability", sa.Float, nullable=False),
        sa.Column("predicted_class", sa.SmallInteger, nullable=False),
        sa.Column("threshold", sa.Float, nullable=False),
    )
    op.create_index("ix_prediction_log_logged_at", "prediction_log", ["logged_at"])
    op.create_index("ix_prediction_log_version_time", "prediction_log", ["model_version", "logged_at"])
    op.create_index("ix_prediction_log_accident_id", "prediction_log", ["accident_id"])
    op.create_table(
        "realized_performance",
        sa.Column("id", ID, primary_key=True, autoincrement=True),
        sa.Column("computed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("job_id", sa.String(32), nullable=False),
        sa.Column("model_version", sa.String(64), nullable=False),
        sa.Column("month", sa.String(7), nullable=True),
        sa.Column("rows_logged", sa.Integer, nullable=False),
        sa.Column("rows_labelled", sa.Integer, nullable=False),
        sa.Column("rows_unlabelled", sa.Integer, nullable=False),
        *(sa.Column(name, sa.Float, nullable=True) for name in (
            "roc_auc", "f1", "precision", "recall", "positive_rate", "predicted_positive_rate", "mean_probability",
            "brier", "ece")),
        sa.Column("label_source", sa.String(200), nullable=False),
        sa.Column("mlflow_run_id", sa.String(64), nullable=True),
    )  # fmt: skip
    op.create_index("ix_realized_version_time", "realized_performance", ["model_version", "computed_at"])


def downgrade() -> None:
    op.drop_table("realized_performance")
    op.drop_table("prediction_log")
