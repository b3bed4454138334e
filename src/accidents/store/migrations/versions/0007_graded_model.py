"""Which model each realized-performance row grades.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06

realized_performance: `model` ("seed" or "report_time", as prediction_log.model) with server
default "seed", so every grade stored before this revision reads as the seed's, which it is. The
label job grades both models' logged rows (issue #25); their version numbers overlap (both
registered models start at 1), so a reader of one model's grades filters on `model` as well as
`model_version`. Columns spelt out (a migration is history); tests/api/monitoring/test_log_writer.py
checks that the migrated schema equals the declared tables.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("realized_performance") as table:
        table.add_column(sa.Column("model", sa.String(32), nullable=False, server_default="seed"))


def downgrade() -> None:
    with op.batch_alter_table("realized_performance") as table:
        table.drop_column("model")
