"""Migration 0004: due time, cancellation, de-duplication and the status CHECK."""

import uuid

import pytest
from sqlalchemy import inspect, text

from aana.configs.settings import Settings
from aana.storage import op
from aana.storage.op import run_alembic_migrations
from tests.helpers import BOTH_BACKENDS

INSERT = (
    "INSERT INTO tasks (id, endpoint, data, status, priority, progress, num_retries) "
    "VALUES (:id, 'e', '{}', :status, 0, 0, 0)"
)


@BOTH_BACKENDS
def test_migration_0004__existing_tasks_become_due_from_their_creation(empty_db):
    settings = Settings(db_config=empty_db)
    run_alembic_migrations(settings)
    op.downgrade(settings, "0003_notify_new_tasks")
    engine = empty_db.get_engine()
    task_id = uuid.uuid4()
    with engine.begin() as connection:
        connection.execute(text(INSERT), {"id": task_id.hex, "status": "created"})
    run_alembic_migrations(settings)
    with engine.connect() as connection:
        created, scheduled, requested = connection.execute(
            text("SELECT created_at, scheduled_at, cancel_requested FROM tasks")
        ).one()
        assert str(created) == str(scheduled) and not requested
        names = {index["name"] for index in inspect(connection).get_indexes("tasks")}
    assert {"ix_tasks_claimable", "ix_tasks_dedupe_key"} <= names
    assert op.compare_with_models(settings) == []


@BOTH_BACKENDS
def test_migration_0004__the_status_check_refuses_unknown_statuses(empty_db):
    run_alembic_migrations(Settings(db_config=empty_db))
    engine = empty_db.get_engine()
    with engine.begin() as connection:
        connection.execute(text(INSERT), {"id": uuid.uuid4().hex, "status": "cancelled"})
    with pytest.raises(Exception, match=r"ck_tasks_status|CHECK"), engine.begin() as connection:
        connection.execute(text(INSERT), {"id": uuid.uuid4().hex, "status": "bogus"})


@BOTH_BACKENDS
def test_migration_0004__downgrade_turns_cancelled_tasks_into_failed_ones(empty_db):
    settings = Settings(db_config=empty_db)
    run_alembic_migrations(settings)
    engine = empty_db.get_engine()
    with engine.begin() as connection:
        connection.execute(text(INSERT), {"id": uuid.uuid4().hex, "status": "cancelled"})
    op.downgrade(settings, "0003_notify_new_tasks")
    with engine.connect() as connection:
        assert connection.execute(text("SELECT status FROM tasks")).scalar_one() == "failed"
        columns = {column["name"] for column in inspect(connection).get_columns("tasks")}
    assert "scheduled_at" not in columns and "dedupe_key" not in columns
