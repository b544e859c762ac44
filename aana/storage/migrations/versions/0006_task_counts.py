"""Tasks per endpoint and status, kept by triggers on tasks

Revision ID: 0006_task_counts
Revises: 0005_dashboard_indexes
Create Date: 2026-12-06

``task_counts`` holds how many tasks each endpoint has in each status, written by
triggers in the transaction that inserts, updates or deletes tasks, so the dashboard
reads a few rows instead of counting every task.

- PostgreSQL: statement-level triggers with transition tables add one row per endpoint
  and status a statement changed, holding the change. They never update a row another
  writer may hold, so concurrent workers do not wait on each other;
  ``TaskRepository.compact_counts`` folds the rows together.
- SQLite (one writer at a time): row-level triggers keep one row per endpoint and status.

The counts of the tasks already stored are written here, while the new triggers' locks
keep writers out.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006_task_counts"
down_revision: str | Sequence[str] | None = "0005_dashboard_indexes"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

POSTGRESQL_TRIGGERS = {
    # name: (event, transition tables, body)
    "inserted": (
        "INSERT",
        "REFERENCING NEW TABLE AS new_tasks",
        "INSERT INTO task_counts (endpoint, status, tasks) "
        "SELECT endpoint, status, count(*) FROM new_tasks GROUP BY endpoint, status;",
    ),
    "deleted": (
        "DELETE",
        "REFERENCING OLD TABLE AS old_tasks",
        "INSERT INTO task_counts (endpoint, status, tasks) "
        "SELECT endpoint, status, -count(*) FROM old_tasks GROUP BY endpoint, status;",
    ),
    # Heartbeats and progress reports change no status: their changes sum to zero and
    # write nothing.
    "updated": (
        "UPDATE",
        "REFERENCING OLD TABLE AS old_tasks NEW TABLE AS new_tasks",
        "INSERT INTO task_counts (endpoint, status, tasks) "
        "SELECT endpoint, status, sum(change) FROM ("
        " SELECT endpoint, status, -1 AS change FROM old_tasks"
        " UNION ALL SELECT endpoint, status, 1 FROM new_tasks"
        ") AS changes GROUP BY endpoint, status HAVING sum(change) <> 0;",
    ),
    # The lock first: a compaction committing meanwhile would otherwise leave its sums,
    # inserted after this DELETE's snapshot.
    "truncated": (
        "TRUNCATE",
        "",
        "LOCK TABLE task_counts IN EXCLUSIVE MODE; DELETE FROM task_counts;",
    ),
}


# One row per endpoint and status: inserted (at 0) when missing, then changed.
SQLITE_ADD_NEW = """
    INSERT INTO task_counts (endpoint, status, tasks) SELECT NEW.endpoint, NEW.status, 0
    WHERE NOT EXISTS (
        SELECT 1 FROM task_counts WHERE endpoint = NEW.endpoint AND status = NEW.status
    );
    UPDATE task_counts SET tasks = tasks + 1 WHERE id = (
        SELECT min(id) FROM task_counts WHERE endpoint = NEW.endpoint AND status = NEW.status
    );
"""
SQLITE_REMOVE_OLD = """
    UPDATE task_counts SET tasks = tasks - 1 WHERE id = (
        SELECT min(id) FROM task_counts WHERE endpoint = OLD.endpoint AND status = OLD.status
    );
"""
SQLITE_TRIGGERS = {
    "inserted": ("AFTER INSERT ON tasks", SQLITE_ADD_NEW),
    "deleted": ("AFTER DELETE ON tasks", SQLITE_REMOVE_OLD),
    "updated": (
        "AFTER UPDATE OF endpoint, status ON tasks "
        "WHEN OLD.status IS NOT NEW.status OR OLD.endpoint IS NOT NEW.endpoint",
        SQLITE_REMOVE_OLD + SQLITE_ADD_NEW,
    ),
}


def upgrade() -> None:
    op.create_table(
        "task_counts",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            nullable=False,
            comment="Row number",
        ),
        sa.Column("endpoint", sa.String(), nullable=False, comment="The tasks' endpoint"),
        sa.Column("status", sa.String(), nullable=False, comment="The tasks' status value"),
        sa.Column(
            "tasks", sa.BigInteger(), nullable=False, comment="How many (a change may be < 0)"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_task_counts")),
    )
    op.create_index("ix_task_counts_endpoint_status", "task_counts", ["endpoint", "status"])
    if op.get_context().dialect.name == "postgresql":
        for name, (event, tables, body) in POSTGRESQL_TRIGGERS.items():
            op.execute(
                f"CREATE FUNCTION aana_count_{name}_tasks() RETURNS trigger "
                f"LANGUAGE plpgsql AS $$ BEGIN {body} RETURN NULL; END $$"
            )
            op.execute(
                f"CREATE TRIGGER tasks_count_{name} AFTER {event} ON tasks {tables} "
                f"FOR EACH STATEMENT EXECUTE FUNCTION aana_count_{name}_tasks()"
            )
    else:
        for name, (when, body) in SQLITE_TRIGGERS.items():
            op.execute(f"CREATE TRIGGER tasks_count_{name} {when} BEGIN {body} END")
    op.execute(
        "INSERT INTO task_counts (endpoint, status, tasks) "
        "SELECT endpoint, status, count(*) FROM tasks GROUP BY endpoint, status"
    )


def downgrade() -> None:
    if op.get_context().dialect.name == "postgresql":
        for name in POSTGRESQL_TRIGGERS:
            op.execute(f"DROP TRIGGER tasks_count_{name} ON tasks")
            op.execute(f"DROP FUNCTION aana_count_{name}_tasks()")
    else:
        for name in SQLITE_TRIGGERS:
            op.execute(f"DROP TRIGGER tasks_count_{name}")
    op.drop_index("ix_task_counts_endpoint_status", table_name="task_counts")
    op.drop_table("task_counts")
