"""Indexes for the dashboard: tasks by status and end time, and by creation time

Revision ID: 0005_dashboard_indexes
Revises: 0004_tasks_in_time
Create Date: 2026-12-05

``ix_tasks_status_completed_at`` (status, completed_at) answers the latest failures and
the tasks ended in the last hour from a range of the index; ``ix_tasks_created_at``
(created_at, id) gives listings newest first without sorting the table.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0005_dashboard_indexes"
down_revision: str | Sequence[str] | None = "0004_tasks_in_time"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_tasks_status_completed_at", "tasks", ["status", "completed_at"])
    op.create_index("ix_tasks_created_at", "tasks", ["created_at", "id"])


def downgrade() -> None:
    op.drop_index("ix_tasks_created_at", table_name="tasks")
    op.drop_index("ix_tasks_status_completed_at", table_name="tasks")
