"""The package's and an application's migrations, applied together.

Application revisions here are written by hand into ``tmp_path`` and create plain tables
with no model, so no entity is added to ``BaseEntity.metadata`` in this process.
"""

from __future__ import annotations

import shutil
import textwrap
from pathlib import Path

import pytest
from sqlalchemy import inspect, text

from aana.configs.db import DbSettings
from aana.configs.settings import Settings
from aana.exceptions.migrations import UnknownRevisionException
from aana.sdk import AanaSDK
from aana.storage import op
from aana.storage.op import AppMigrations
from tests.conftest import PACKAGE_HEAD
from tests.helpers import BOTH_BACKENDS

PACKAGE_TABLES = {"caption", "media", "task_counts", "tasks", "transcript", "video", "workers"}


def write_revision(
    folder: Path,
    revision: str,
    down_revision: str | None = None,
    table: str | None = None,
    fail: bool = False,
    branch_labels: tuple[str, ...] | None = None,
    depends_on: str | None = None,
) -> None:
    """A revision that creates ``table`` (if given) and then fails (if ``fail``)."""
    folder.mkdir(parents=True, exist_ok=True)
    create = f"op.create_table({table!r}, sa.Column('id', sa.Integer(), primary_key=True))"
    body = "\n".join(
        line
        for line in (
            create if table else "",
            "raise RuntimeError('this migration fails')" if fail else "",
            "pass",
        )
        if line
    )
    downgrade = f"op.drop_table({table!r})" if table else "pass"
    (folder / f"{revision}.py").write_text(
        "import sqlalchemy as sa\n"
        "from alembic import op\n\n"
        f"revision = {revision!r}\n"
        f"down_revision = {down_revision!r}\n"
        f"branch_labels = {branch_labels!r}\n"
        f"depends_on = {depends_on!r}\n\n\n"
        f"def upgrade():\n{textwrap.indent(body, '    ')}\n\n\n"
        f"def downgrade():\n    {downgrade}\n"
    )


@pytest.fixture
def app(tmp_path: Path) -> AppMigrations:
    """An application with one revision creating the table ``note``."""
    folder = tmp_path / "app_migrations"
    write_revision(
        folder, "a1_note", table="note", branch_labels=("myapp",), depends_on=PACKAGE_HEAD
    )
    return AppMigrations(label="myapp", path=folder)


def tables(db: DbSettings) -> set[str]:
    return set(inspect(db.get_engine()).get_table_names())


def versions(db: DbSettings) -> set[str]:
    with db.get_engine().connect() as connection:
        return set(connection.scalars(text("SELECT version_num FROM alembic_version")))


@BOTH_BACKENDS
def test_migrate__applies_the_package_then_the_application(
    empty_db: DbSettings, app: AppMigrations
) -> None:
    op.run_alembic_migrations(Settings(db_config=empty_db), app=app)

    assert tables(empty_db) == PACKAGE_TABLES | {"note", "alembic_version"}
    assert versions(empty_db) == {"a1_note"}  # it depends on the package's head, applied


@BOTH_BACKENDS
def test_migrate__a_second_run_changes_nothing(empty_db: DbSettings, app: AppMigrations) -> None:
    settings = Settings(db_config=empty_db)
    op.run_alembic_migrations(settings, app=app)
    op.run_alembic_migrations(settings, app=app)

    assert versions(empty_db) == {"a1_note"}


@BOTH_BACKENDS
def test_sdk_migrate__runs_package_and_app_migrations(
    empty_db: DbSettings, app: AppMigrations
) -> None:
    AanaSDK(name="myapp", settings=Settings(db_config=empty_db), migrations_path=app.path).migrate()

    assert "note" in tables(empty_db)


def test_sdk__migrations_default_to_a_folder_beside_the_creating_module() -> None:
    assert AanaSDK().migrations_path == Path(__file__).resolve().parent / "migrations"


def test_sdk_migrate__migration_func_replaces_the_migrations(empty_db: DbSettings) -> None:
    calls: list[Settings] = []
    settings = Settings(db_config=empty_db)

    AanaSDK(migration_func=calls.append, settings=settings).migrate()

    assert calls == [settings]
    assert tables(empty_db) == set()


@BOTH_BACKENDS
def test_newer_package_revision__applies_and_leaves_the_application_alone(
    empty_db: DbSettings, app: AppMigrations, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = Settings(db_config=empty_db)
    op.run_alembic_migrations(settings, app=app)
    newer_package = tmp_path / "package_versions"
    shutil.copytree(op.PACKAGE_VERSIONS, newer_package)
    write_revision(newer_package, "9999_test_only", down_revision=PACKAGE_HEAD, table="extra")
    monkeypatch.setattr(op, "PACKAGE_VERSIONS", newer_package)

    op.run_alembic_migrations(settings, app=app)

    assert versions(empty_db) == {"9999_test_only", "a1_note"}
    assert {"extra", "note"} <= tables(empty_db)


@BOTH_BACKENDS
def test_migrate__database_at_an_unknown_revision_is_refused_unchanged(
    empty_db: DbSettings, app: AppMigrations
) -> None:
    settings = Settings(db_config=empty_db)
    op.run_alembic_migrations(settings)
    with empty_db.get_engine().begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = 'from_the_future'"))

    with pytest.raises(UnknownRevisionException, match="'from_the_future'"):
        op.run_alembic_migrations(settings, app=app)

    assert "note" not in tables(empty_db)
    assert versions(empty_db) == {"from_the_future"}


@BOTH_BACKENDS
def test_migrate__unknown_application_revision_without_app_path_is_refused(
    empty_db: DbSettings, app: AppMigrations
) -> None:
    settings = Settings(db_config=empty_db)
    op.run_alembic_migrations(settings, app=app)

    with pytest.raises(UnknownRevisionException, match="APP_PATH"):
        op.run_alembic_migrations(settings)
    with pytest.raises(UnknownRevisionException):
        op.current_revisions(settings)


@BOTH_BACKENDS
def test_failing_app_migration__database_stays_at_the_previous_revision(
    empty_db: DbSettings, app: AppMigrations
) -> None:
    settings = Settings(db_config=empty_db)
    op.run_alembic_migrations(settings, app=app)
    write_revision(app.path, "a2_tag", down_revision="a1_note", table="tag", fail=True)

    with pytest.raises(RuntimeError, match="this migration fails"):
        op.run_alembic_migrations(settings, app=app)

    assert versions(empty_db) == {"a1_note"}
    assert "tag" not in tables(empty_db)


@pytest.mark.parametrize(
    ("empty_db", "left"),
    [
        # PostgreSQL: one transaction per migration, those before the failure stay.
        ("postgresql", {"a1_note"}),
        # SQLite: the whole run is one transaction (its write lock is the migration lock).
        ("sqlite", set()),
    ],
    indirect=["empty_db"],
)
def test_failing_app_migration__in_a_fresh_run_what_stays_depends_on_the_backend(
    empty_db: DbSettings, app: AppMigrations, left: set[str]
) -> None:
    write_revision(app.path, "a2_tag", down_revision="a1_note", table="tag", fail=True)

    with pytest.raises(RuntimeError):
        op.run_alembic_migrations(Settings(db_config=empty_db), app=app)

    if left:
        assert versions(empty_db) == left
    else:
        assert tables(empty_db) == set()


@BOTH_BACKENDS
def test_downgrade__application_branch_to_base_keeps_the_package(
    empty_db: DbSettings, app: AppMigrations
) -> None:
    settings = Settings(db_config=empty_db)
    op.run_alembic_migrations(settings, app=app)

    op.downgrade(settings, "myapp@base", app)

    assert versions(empty_db) == {PACKAGE_HEAD}
    assert tables(empty_db) == PACKAGE_TABLES | {"alembic_version"}


@BOTH_BACKENDS
def test_current_and_history__name_package_and_application_revisions(
    empty_db: DbSettings, app: AppMigrations
) -> None:
    settings = Settings(db_config=empty_db)
    assert op.current_revisions(settings, app) == []
    op.run_alembic_migrations(settings, app=app)

    assert [line.split()[0] for line in op.current_revisions(settings, app)] == ["a1_note"]
    history = "\n".join(op.history(settings, app))
    assert "a1_note (myapp)" in history
    assert "0001_initial (aana)" in history


@BOTH_BACKENDS
def test_package_migrations__build_exactly_the_models_schema(empty_db: DbSettings) -> None:
    assert op.compare_with_models(Settings(db_config=empty_db)) == []
    assert tables(empty_db) == set()  # the comparison ran in a transaction rolled back
