"""Migration 0005: the dashboard's indexes and the workers table."""

from sqlalchemy import inspect

from aana.configs.settings import Settings
from aana.storage import op
from aana.storage.op import run_alembic_migrations
from tests.helpers import BOTH_BACKENDS

INDEXES = {"ix_tasks_status_completed_at", "ix_tasks_created_at"}


def index_names(db):
    with db.get_engine().connect() as connection:
        return {index["name"] for index in inspect(connection).get_indexes("tasks")}


def has_workers_table(db):
    with db.get_engine().connect() as connection:
        return inspect(connection).has_table("workers")


@BOTH_BACKENDS
def test_migration_0005__adds_indexes_and_workers_and_downgrade_removes_them(empty_db):
    settings = Settings(db_config=empty_db)
    run_alembic_migrations(settings)
    assert index_names(empty_db) >= INDEXES and has_workers_table(empty_db)
    op.downgrade(settings, "0004_tasks_in_time")
    assert not index_names(empty_db) & INDEXES and not has_workers_table(empty_db)
    run_alembic_migrations(settings)
    assert index_names(empty_db) >= INDEXES and has_workers_table(empty_db)
    assert op.compare_with_models(settings) == []
