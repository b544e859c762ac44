"""The migrations produce exactly the models' schema, on every backend."""

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from aana.configs.settings import Settings
from aana.sdk import AanaSDK
from aana.storage.models import BaseEntity
from aana.storage.op import run_alembic_migrations

PACKAGE_TABLES = {"media", "video", "transcript", "caption", "tasks"}


def test_migrated_schema__autogenerate_finds_no_difference(db):
    with db.get_engine().connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, BaseEntity.metadata) == []


@pytest.mark.parametrize("empty_db", ["sqlite", "postgresql"], indirect=True)
def test_migrate__creates_the_schema_and_a_second_run_is_a_no_op(empty_db):
    settings = Settings(db_config=empty_db)
    run_alembic_migrations(settings)
    engine = empty_db.get_engine()
    tables = set(inspect(engine).get_table_names())
    assert PACKAGE_TABLES | {"alembic_version"} <= tables
    with engine.connect() as connection:
        version = connection.exec_driver_sql("SELECT version_num FROM alembic_version").all()
    run_alembic_migrations(settings)
    with engine.connect() as connection:
        assert connection.exec_driver_sql("SELECT version_num FROM alembic_version").all() == (
            version
        )


@pytest.mark.parametrize("empty_db", ["sqlite", "postgresql"], indirect=True)
def test_sdk_migrate__package_migrations_or_the_given_function(empty_db):
    settings = Settings(db_config=empty_db)
    calls = []
    AanaSDK(migration_func=calls.append, settings=settings).migrate()
    assert calls == [settings]
    assert "media" not in inspect(empty_db.get_engine()).get_table_names()
    AanaSDK(settings=settings).migrate()
    assert "media" in inspect(empty_db.get_engine()).get_table_names()
