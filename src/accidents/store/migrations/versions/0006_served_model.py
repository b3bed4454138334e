"""Which model served each logged prediction, and the report-time model's inputs.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-05

prediction_log: `model` ("seed": POST /predict's 28-feature model; "report_time": POST
/v2/predict's accidents-report-time) with server default "seed", so every row logged before
this revision reads as the seed's, which it is; `report_features` (text, NULL on seed rows): the
report-time model's 95 inputs as one JSON object {feature: value or null} per row.

Why a text column on the same table, not 95 columns or a table of their own: the seed's insert
(api/monitoring/log_process.py) stays what it was, the same 28 float columns bound per row plus
one per-batch value (`model`), and a seed row carries one NULL more; 95 float columns would widen
every seed row and every `SELECT *` of the jobs, and a separate table keyed by the log's id would
need the generated ids back from each batch insert (executemany and PostgreSQL's COPY do not
return them) or a second key. A JSON object keyed by feature name stays readable when a later
report-time version takes other features. Columns spelt out (a migration is history);
tests/api/monitoring/test_log_writer.py checks that the migrated schema equals the declared tables.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("prediction_log") as table:
        table.add_column(sa.Column("model", sa.String(32), nullable=False, server_default="seed"))
        table.add_column(sa.Column("report_features", sa.Text, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("prediction_log") as table:
        table.drop_column("report_features")
        table.drop_column("model")
