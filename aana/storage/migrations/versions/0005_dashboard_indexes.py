"""The dashboard: tasks indexed by status and end time and by creation time; workers

Revision ID: 0005_dashboard_indexes
Revises: 0004_tasks_in_time
Create Date: 2026-12-05

``ix_tasks_status_completed_at`` (status, completed_at) answers the latest failures and
the tasks ended in the last hour from a range of the index; ``ix_tasks_created_at``
(created_at, id) gives listings newest first without sorting the table. The ``workers``
table holds one row per running worker process, written at each of its heartbeats.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import aana.storage.dialects
import aana.storage.types

revision: str = "0005_dashboard_indexes"
down_revision: str | Sequence[str] | None = "0004_tasks_in_time"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_tasks_status_completed_at", "tasks", ["status", "completed_at"])
    op.create_index("ix_tasks_created_at", "tasks", ["created_at", "id"])
    op.create_table(
        "workers",
        sa.Column("id", sa.String(), nullable=False, comment="host:pid:random, per process"),
        sa.Column("hostname", sa.String(), nullable=False, comment="Host the worker runs on"),
        sa.Column("pid", sa.Integer(), nullable=False, comment="Its process id on that host"),
        sa.Column("concurrency", sa.Integer(), nullable=False, comment="Tasks it runs at once"),
        sa.Column(
            "running", sa.Integer(), nullable=False, comment="Tasks it held at its heartbeat"
        ),
        sa.Column("processed", sa.Integer(), nullable=False, comment="Tasks it finished so far"),
        sa.Column(
            "started_at",
            aana.storage.types.UtcDateTime(),
            server_default=aana.storage.dialects.utcnow(),
            nullable=False,
            comment="First heartbeat (UTC)",
        ),
        sa.Column(
            "last_heartbeat",
            aana.storage.types.UtcDateTime(),
            server_default=aana.storage.dialects.utcnow(),
            nullable=False,
            comment="Latest heartbeat (UTC)",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_workers")),
    )
    op.create_index("ix_workers_last_heartbeat", "workers", ["last_heartbeat"])


def downgrade() -> None:
    op.drop_index("ix_workers_last_heartbeat", table_name="workers")
    op.drop_table("workers")
    op.drop_index("ix_tasks_created_at", table_name="tasks")
    op.drop_index("ix_tasks_status_completed_at", table_name="tasks")
