"""Test fixtures: a fresh, migrated database per test, on SQLite and PostgreSQL.

Each backend is migrated once per test session into a template; every test gets its own
copy (a file copy for SQLite, ``CREATE DATABASE ... TEMPLATE`` for PostgreSQL) and drops
it afterwards. PostgreSQL tests skip when the server is unreachable, unless
``AANA_TEST_REQUIRE_POSTGRES=1`` (set by CI), where they fail.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from alembic.script import ScriptDirectory
from psycopg import sql

from aana.configs.db import DbSettings
from aana.configs.settings import Settings
from aana.storage import op
from aana.storage.op import run_alembic_migrations
from tests.apis import APIS, Api

PG_SERVER = {
    "host": os.environ.get("AANA_TEST_PG_HOST", "127.0.0.1"),
    "port": int(os.environ.get("AANA_TEST_PG_PORT", "5432")),
    "user": os.environ.get("AANA_TEST_PG_USER", "postgres"),
    "password": os.environ.get("AANA_TEST_PG_PASSWORD", ""),
}
PACKAGE_HEAD = ScriptDirectory(
    str(op.MIGRATIONS_PATH), version_locations=[str(op.PACKAGE_VERSIONS)]
).get_current_head()
"""The newest revision of the package's own migrations."""
REQUIRE_POSTGRES = os.environ.get("AANA_TEST_REQUIRE_POSTGRES") == "1"
BACKENDS = ["sqlite", "postgresql"]


def pg_settings(database: str, **options: int) -> DbSettings:
    return DbSettings(
        datastore_type="postgresql", datastore_config={**PG_SERVER, "database": database}, **options
    )


def pg_admin() -> psycopg.Connection[tuple[object, ...]]:
    return psycopg.connect(dbname="postgres", autocommit=True, connect_timeout=5, **PG_SERVER)


def create_pg_database(template: str | None = None) -> str:
    name = f"aana_test_{uuid.uuid4().hex[:16]}"
    query = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
    if template:
        query = sql.SQL("{} TEMPLATE {}").format(query, sql.Identifier(template))
    with pg_admin() as admin:
        admin.execute(query)
    return name


def drop_pg_database(name: str) -> None:
    with pg_admin() as admin:
        admin.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


def release(settings: DbSettings, pg_database: str | None) -> None:
    """Close the engine of ``settings``, then drop its PostgreSQL database if it has one."""
    settings.get_engine().dispose()
    if pg_database:
        drop_pg_database(pg_database)


@pytest.fixture(scope="session")
def postgres_available() -> bool:
    try:
        with pg_admin():
            return True
    except psycopg.OperationalError as error:
        if REQUIRE_POSTGRES:
            pytest.fail(f"PostgreSQL is required (AANA_TEST_REQUIRE_POSTGRES=1): {error}")
        return False


@pytest.fixture
def empty_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[DbSettings]:
    """Settings of an empty database (no schema) on the requested backend."""
    if getattr(request, "param", "sqlite") == "sqlite":
        settings = DbSettings(datastore_config={"path": str(tmp_path / "empty.db")})
        name = None
    else:
        if not request.getfixturevalue("postgres_available"):
            pytest.skip("PostgreSQL is not reachable")
        name = create_pg_database()
        settings = pg_settings(name)
    try:
        yield settings
    finally:
        release(settings, name)


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "template.db"
    db = DbSettings(datastore_config={"path": str(path)})
    run_alembic_migrations(Settings(db_config=db))
    with db.get_engine().connect() as connection:
        connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    db.get_engine().dispose()
    return path


@pytest.fixture(scope="session")
def postgres_template(postgres_available: bool) -> Iterator[str | None]:
    if not postgres_available:
        yield None
        return
    name = create_pg_database()
    db = pg_settings(name)
    run_alembic_migrations(Settings(db_config=db))
    db.get_engine().dispose()
    yield name
    drop_pg_database(name)


@pytest.fixture(params=BACKENDS)
def db(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[DbSettings]:
    """Settings of a fresh, migrated database, also installed as the process-wide one."""
    from aana.configs.settings import settings as process_settings

    if request.param == "sqlite":
        path = tmp_path / "aana.db"
        shutil.copy(request.getfixturevalue("sqlite_template"), path)
        settings = DbSettings(datastore_config={"path": str(path)})
        name = None
    else:
        template = request.getfixturevalue("postgres_template")
        if template is None:
            pytest.skip("PostgreSQL is not reachable")
        name = create_pg_database(template)
        settings = pg_settings(name)
    monkeypatch.setattr(process_settings, "db_config", settings)
    try:
        yield settings
    finally:
        release(settings, name)


@pytest.fixture(params=APIS)
def api(request: pytest.FixtureRequest, db: DbSettings) -> Iterator[Api]:
    """The repositories of the sync or the async API, on ``db`` (see ``tests/apis.py``)."""
    api = Api(request.param, db)
    try:
        yield api
    finally:
        api.close()


@pytest.fixture
def session(request: pytest.FixtureRequest, db: DbSettings) -> Iterator[Any]:
    """A session on ``db``; in a test that takes ``api``, that API's session."""
    if "api" in request.fixturenames:
        yield request.getfixturevalue("api").session
        return
    from aana.storage.session import get_session

    with get_session() as session:
        yield session
