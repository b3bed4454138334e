"""Shadow predictions of the challenger in the prediction log, and shadow comparisons in the
realized results.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02

prediction_log: `shadow` (true: the challenger's prediction of a served row, never sent to the
client) with the champion's version, probability and class for the same row. realized_performance:
`shadow_champion` / `shadow_challenger` mark the rows grading both models on the same labelled
shadow rows (accidents.monitoring.realized). Existing rows: shadow false, the rest NULL.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("prediction_log") as table:
        table.add_column(sa.Column("shadow", sa.Boolean, nullable=False, server_default=sa.false()))
        table.add_column(sa.Column("champion_version", sa.String(64), nullable=True))
        table.add_column(sa.Column("champion_probability", sa.Float, nullable=True))
        table.add_column(sa.Column("champion_class", sa.SmallInteger, nullable=True))
    with op.batch_alter_table("realized_performance") as table:
        table.add_column(sa.Column("shadow_champion", sa.String(64), nullable=True))
        table.add_column(sa.Column("shadow_challenger", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("realized_performance") as table:
        table.drop_column("shadow_challenger")
        table.drop_column("shadow_champion")
    with op.batch_alter_table("prediction_log") as table:
        for name in ("champion_class", "champion_probability", "champion_version", "shadow"):
            table.drop_column(name)
