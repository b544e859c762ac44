"""PostgreSQL: every insert into tasks wakes the listening workers

Revision ID: 0003_notify_new_tasks
Revises: 0002_claim_order_index
Create Date: 2026-11-30

A statement-level trigger sends the notification: a task inserted by any means (the
queue's defer, the repository, plain SQL) wakes idle workers when its transaction
commits, and the inserting client spends no round trip on it. SQLite has no
notifications; its workers poll.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0003_notify_new_tasks"
down_revision: str | Sequence[str] | None = "0002_claim_order_index"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(
        """
        CREATE FUNCTION aana_notify_new_tasks() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify('aana_tasks', '');
            RETURN NULL;
        END
        $$
        """
    )
    op.execute(
        "CREATE TRIGGER tasks_notify_new AFTER INSERT ON tasks "
        "FOR EACH STATEMENT EXECUTE FUNCTION aana_notify_new_tasks()"
    )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP TRIGGER tasks_notify_new ON tasks")
    op.execute("DROP FUNCTION aana_notify_new_tasks()")
