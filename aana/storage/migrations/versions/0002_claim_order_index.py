"""Claimable-tasks index in claim order (priority DESC, created_at, id)

Revision ID: 0002_claim_order_index
Revises: 0001_initial
Create Date: 2026-11-30
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002_claim_order_index"
down_revision: str | Sequence[str] | None = "0001_initial"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CLAIMABLE = sa.text("status IN ('created', 'not_finished')")


def upgrade() -> None:
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.drop_index("ix_tasks_claimable")
        batch_op.create_index(
            "ix_tasks_claimable",
            [sa.literal_column("priority").desc(), "created_at", "id"],
            unique=False,
            postgresql_where=CLAIMABLE,
            sqlite_where=CLAIMABLE,
        )


def downgrade() -> None:
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.drop_index("ix_tasks_claimable")
        batch_op.create_index(
            "ix_tasks_claimable",
            ["priority", "created_at"],
            unique=False,
            postgresql_where=CLAIMABLE,
            sqlite_where=CLAIMABLE,
        )
