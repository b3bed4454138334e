"""Which model each drift result and estimate is of.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06

drift_results and estimated_performance: `model` ("seed" or "report_time", as prediction_log.model)
with server default "seed", so every result stored before this revision reads as the seed's, which
it is (the drift and estimation jobs read the seed's rows only until then). Both jobs now also
watch the report-time model (issue #25); the two registered models both number their versions from
1, so a reader of one model's results filters on `model` as well as `model_version`. Columns spelt
out (a migration is history); tests/api/monitoring/test_log_writer.py checks that the migrated
schema equals the declared tables.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

TABLES = ("drift_results", "estimated_performance")


def upgrade() -> None:
    for name in TABLES:
        with op.batch_alter_table(name) as table:
            table.add_column(sa.Column("model", sa.String(32), nullable=False, server_default="seed"))


def downgrade() -> None:
    for name in TABLES:
        with op.batch_alter_table(name) as table:
            table.drop_column("model")
