"""Tasks in time: due time, cancellation, de-duplication, a CHECK on the status

Revision ID: 0004_tasks_in_time
Revises: 0003_notify_new_tasks
Create Date: 2026-12-01

Adds ``scheduled_at`` (when a task becomes claimable; existing tasks are due from their
creation), ``cancel_requested``, ``dedupe_key`` with a partial unique index over the
unfinished tasks, ``period_key`` (unique: one task per period of a periodic task), a
CHECK constraint listing the statuses (``cancelled`` among them), and rebuilds
``ix_tasks_claimable`` in the new claim order (priority DESC, scheduled_at, id).
"""

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

import aana.storage.dialects
import aana.storage.types

revision: str = "0004_tasks_in_time"
down_revision: str | Sequence[str] | None = "0003_notify_new_tasks"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CLAIMABLE = sa.text("status IN ('created', 'not_finished')")
UNFINISHED = sa.text(
    "dedupe_key IS NOT NULL AND status IN ('created', 'assigned', 'running', 'not_finished')"
)
STATUSES = "'created', 'assigned', 'completed', 'running', 'failed', 'not_finished', 'cancelled'"


def tasks_table(with_new_columns: bool) -> sa.Table:
    """The tasks table as revision 0003 left it (plus this revision's columns).

    Given to SQLite's batch mode, which would otherwise reflect the table: that needs a
    live database, and ``aana migrate --sql`` has none.
    """
    columns: list[sa.Column[Any]] = [
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("endpoint", sa.String(), nullable=False),
        sa.Column("data", aana.storage.types.JsonType, nullable=False),
        sa.Column("status", sa.String(length=64), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("assigned_at", aana.storage.types.UtcDateTime(), nullable=True),
        sa.Column("completed_at", aana.storage.types.UtcDateTime(), nullable=True),
        sa.Column("progress", sa.Double(), nullable=False),
        sa.Column("result", aana.storage.types.JsonType, nullable=True),
        sa.Column("num_retries", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.String(), nullable=True),
        sa.Column(
            "created_at",
            aana.storage.types.UtcDateTime(),
            server_default=aana.storage.dialects.utcnow(),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            aana.storage.types.UtcDateTime(),
            server_default=aana.storage.dialects.utcnow(),
            nullable=False,
        ),
    ]
    if with_new_columns:
        columns += [
            sa.Column(
                "scheduled_at",
                aana.storage.types.UtcDateTime(),
                server_default=aana.storage.dialects.utcnow(),
                nullable=True,
            ),
            sa.Column("cancel_requested", sa.Boolean(), server_default=sa.false(), nullable=False),
            sa.Column("period_key", aana.storage.types.CheckedString(length=255), nullable=True),
            sa.Column("dedupe_key", aana.storage.types.CheckedString(length=255), nullable=True),
        ]
    table = sa.Table(
        "tasks", sa.MetaData(), *columns, sa.PrimaryKeyConstraint("id", name="pk_tasks")
    )
    sa.Index("ix_tasks_status", table.c.status)
    sa.Index("ix_tasks_user_id", table.c.user_id)
    return table


def upgrade() -> None:
    # Partial indexes are dropped before SQLite's batch mode copies the table, and built
    # again after: its reflection would not keep their WHERE clauses.
    op.drop_index("ix_tasks_claimable", table_name="tasks")
    with op.batch_alter_table("tasks", copy_from=tasks_table(False)) as batch_op:
        batch_op.add_column(
            sa.Column(
                "scheduled_at",
                aana.storage.types.UtcDateTime(),
                server_default=aana.storage.dialects.utcnow(),
                nullable=True,
                comment="When the task is due: claimable from then on (UTC)",
            )
        )
        batch_op.add_column(
            sa.Column(
                "cancel_requested",
                sa.Boolean(),
                server_default=sa.false(),
                nullable=False,
                comment="Cancelled while running",
            )
        )
        batch_op.add_column(
            sa.Column(
                "period_key",
                aana.storage.types.CheckedString(length=255),
                nullable=True,
                comment="Periodic tasks: endpoint and period start, one task per period",
            )
        )
        batch_op.add_column(
            sa.Column(
                "dedupe_key",
                aana.storage.types.CheckedString(length=255),
                nullable=True,
                comment="At most one unfinished task has this key",
            )
        )
    op.execute("UPDATE tasks SET scheduled_at = created_at")
    with op.batch_alter_table("tasks", copy_from=tasks_table(True)) as batch_op:
        batch_op.alter_column(
            "scheduled_at", existing_type=aana.storage.types.UtcDateTime(), nullable=False
        )
        batch_op.create_unique_constraint(op.f("uq_tasks_period_key"), ["period_key"])
        batch_op.create_check_constraint(
            op.f("ck_tasks_status"), sa.text(f"status IN ({STATUSES})")
        )
    op.create_index(
        "ix_tasks_claimable",
        "tasks",
        [sa.literal_column("priority").desc(), "scheduled_at", "id"],
        unique=False,
        postgresql_where=CLAIMABLE,
        sqlite_where=CLAIMABLE,
    )
    op.create_index(
        "ix_tasks_dedupe_key",
        "tasks",
        ["dedupe_key"],
        unique=True,
        postgresql_where=UNFINISHED,
        sqlite_where=UNFINISHED,
    )


def downgrade() -> None:
    op.drop_index("ix_tasks_dedupe_key", table_name="tasks")
    op.drop_index("ix_tasks_claimable", table_name="tasks")
    # Cancelled tasks have no status before this revision: they end as failed.
    op.execute(
        "UPDATE tasks SET status = 'failed', completed_at = COALESCE(completed_at, updated_at) "
        "WHERE status = 'cancelled'"
    )
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_tasks_status"), type_="check")
        batch_op.drop_constraint(op.f("uq_tasks_period_key"), type_="unique")
        batch_op.drop_column("dedupe_key")
        batch_op.drop_column("period_key")
        batch_op.drop_column("cancel_requested")
        batch_op.drop_column("scheduled_at")
    op.create_index(
        "ix_tasks_claimable",
        "tasks",
        [sa.literal_column("priority").desc(), "created_at", "id"],
        unique=False,
        postgresql_where=CLAIMABLE,
        sqlite_where=CLAIMABLE,
    )
