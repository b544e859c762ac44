"""Drop ix_tasks_status: ix_tasks_status_completed_at serves every query by status

Revision ID: 0007_drop_status_index
Revises: 0006_task_counts
Create Date: 2026-12-06

Every query that tests ``status`` reads the leading column of ``ix_tasks_status_completed_at``
(status, completed_at) as well as it read ``ix_tasks_status`` (status). A change of
status cannot be a HOT update, so every claim and every result inserted an entry into
both: one index fewer to write twice per task.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0007_drop_status_index"
down_revision: str | Sequence[str] | None = "0006_task_counts"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_index("ix_tasks_status", table_name="tasks")


def downgrade() -> None:
    op.create_index("ix_tasks_status", "tasks", ["status"])
