"""The migration commands report as Alembic does: check, migrate, downgrade, heads, --sql."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import inspect

from aana.configs.db import DbSettings
from tests.acceptance.conftest import APP_PATH
from tests.conftest import PACKAGE_HEAD
from tests.helpers import BOTH_BACKENDS, aana

PACKAGE_REVISIONS = [
    "0001_initial",
    "0002_claim_order_index",
    "0003_notify_new_tasks",
    "0004_tasks_in_time",
    "0005_dashboard_indexes",
    "0006_task_counts",
    "0007_drop_status_index",
]


@BOTH_BACKENDS
def test_check__database_behind_the_heads_fails_listing_pending(
    empty_db: DbSettings, tmp_path: Path
) -> None:
    aana("downgrade", "--help", cwd=tmp_path, db=empty_db)  # no database needed
    behind = aana("check", cwd=tmp_path, db=empty_db, check=False)
    assert behind.returncode == 1
    assert "The database is behind the migrations; pending revisions:" in behind.stderr
    pending = [line.split()[0] for line in behind.stderr.splitlines() if line.startswith("  ")]
    assert pending == PACKAGE_REVISIONS
    assert "aana migrate" in behind.stderr
    assert "agree" not in behind.stdout


@BOTH_BACKENDS
def test_migrate__prints_each_revision_then_nothing_to_do(
    empty_db: DbSettings, tmp_path: Path
) -> None:
    first = aana("migrate", cwd=tmp_path, db=empty_db).stdout.splitlines()
    assert [line.split()[1] for line in first[:-1]] == PACKAGE_REVISIONS
    assert all(line.startswith("Applied ") for line in first[:-1])
    assert first[-1] == f"Database is up to date ({len(PACKAGE_REVISIONS)} revision(s) applied)."
    again = aana("migrate", cwd=tmp_path, db=empty_db).stdout
    assert again == "Database is up to date: nothing to do.\n"
    assert aana("check", cwd=tmp_path, db=empty_db).returncode == 0


def test_downgrade__prints_the_revision_reached(empty_db: DbSettings, app_root: Path) -> None:
    aana("revision", APP_PATH, "--autogenerate", "-m", "First", cwd=app_root, db=empty_db)
    aana("migrate", APP_PATH, cwd=app_root, db=empty_db)
    result = aana("downgrade", APP_PATH, "extended_video@-1", cwd=app_root, db=empty_db)
    assert result.stdout.splitlines()[0] == "Database downgraded to:"
    assert f"  {PACKAGE_HEAD} (aana)" in result.stdout
    assert "extended_video@-1" not in result.stdout


def test_heads__one_per_branch(empty_db: DbSettings, app_root: Path) -> None:
    assert aana("heads", cwd=app_root, db=empty_db).stdout.startswith(f"{PACKAGE_HEAD} (aana)")
    aana("revision", APP_PATH, "-m", "First", cwd=app_root, db=empty_db)
    lines = aana("heads", APP_PATH, cwd=app_root, db=empty_db).stdout.splitlines()
    assert len(lines) == 2
    assert any("(extended_video)" in line and "First" in line for line in lines)


@BOTH_BACKENDS
def test_migrate_sql__offline_sql_for_the_dialect_and_no_change(
    empty_db: DbSettings, tmp_path: Path
) -> None:
    result = aana("migrate", "--sql", cwd=tmp_path, db=empty_db)
    assert "CREATE TABLE tasks" in result.stdout
    assert "CREATE TABLE alembic_version" in result.stdout
    if empty_db.datastore_type == "postgresql":
        assert "CREATE FUNCTION aana_notify_new_tasks()" in result.stdout
    assert inspect(empty_db.get_engine()).get_table_names() == []
