"""The ``aana`` migration commands and the documentation page's example, as a user runs them."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import inspect

from aana.configs.db import DbSettings
from tests.acceptance.conftest import APP_PATH
from tests.conftest import PACKAGE_HEAD
from tests.helpers import BOTH_BACKENDS, aana, run

PACKAGE_TABLE_CALLS = [f"op.create_table('{name}'" for name in ("media", "video", "tasks")]


def migration_files(app_root: Path) -> list[Path]:
    """The application's revision files (without ``__init__.py``), oldest first."""
    folder = app_root / "extended_video" / "migrations"
    assert (folder / "__init__.py").is_file()
    revisions = [path for path in folder.glob("*.py") if path.name != "__init__.py"]
    return sorted(revisions, key=lambda path: path.stat().st_mtime)


@BOTH_BACKENDS
def test_documentation_example__revision_migrate_and_use(
    empty_db: DbSettings, app_root: Path
) -> None:
    written = aana(
        "revision",
        APP_PATH,
        "--autogenerate",
        "-m",
        "Add extended video",
        cwd=app_root,
        db=empty_db,
    )
    assert "Wrote" in written.stdout
    [revision] = migration_files(app_root)
    source = revision.read_text()
    assert "op.create_table('extended_video'" in source
    assert not any(call in source for call in PACKAGE_TABLE_CALLS)
    assert f"depends_on: str | Sequence[str] | None = {PACKAGE_HEAD!r}" in source
    assert "branch_labels: str | Sequence[str] | None = ('extended_video',)" in source
    assert inspect(empty_db.get_engine()).get_table_names() == []  # revision changed nothing

    aana("migrate", APP_PATH, cwd=app_root, db=empty_db)
    used = run(["-m", "extended_video.run"], cwd=app_root, db=empty_db)

    assert used.stdout.splitlines() == [
        "status: created",
        "status: completed",
        'metadata: {"title":"My Video","description":"","duration":42.0}',
    ]
    again = aana("revision", APP_PATH, "--autogenerate", "-m", "Nothing", cwd=app_root, db=empty_db)
    assert "No changes" in again.stdout
    assert migration_files(app_root) == [revision]
    assert "agree" in aana("check", APP_PATH, cwd=app_root, db=empty_db).stdout


@BOTH_BACKENDS
def test_model_change__check_fails_naming_it_until_a_revision_is_applied(
    empty_db: DbSettings, app_root: Path
) -> None:
    aana("revision", APP_PATH, "--autogenerate", "-m", "First", cwd=app_root, db=empty_db)
    aana("migrate", APP_PATH, cwd=app_root, db=empty_db)
    module = app_root / "extended_video" / "app.py"
    duration = '    duration: Mapped[float | None] = mapped_column(comment="Video duration'
    rating = "    rating: Mapped[int | None] = mapped_column()\n"
    module.write_text(module.read_text().replace(duration, rating + duration))

    differs = aana("check", APP_PATH, cwd=app_root, db=empty_db, check=False)
    assert differs.returncode == 1
    assert "add_column extended_video rating" in differs.stderr

    aana("revision", APP_PATH, "--autogenerate", "-m", "Add rating", cwd=app_root, db=empty_db)
    second = migration_files(app_root)[-1].read_text()
    assert "batch_op.add_column(sa.Column('rating'" in second
    aana("migrate", APP_PATH, cwd=app_root, db=empty_db)
    assert aana("check", APP_PATH, cwd=app_root, db=empty_db).returncode == 0

    history = aana("history", APP_PATH, cwd=app_root, db=empty_db).stdout
    assert "Add rating" in history
    assert "0001_initial (aana)" in history
    aana("downgrade", APP_PATH, "extended_video@-1", cwd=app_root, db=empty_db)
    current = aana("current", APP_PATH, cwd=app_root, db=empty_db).stdout
    assert "(extended_video)" in current
    assert "rating" not in {
        c["name"] for c in inspect(empty_db.get_engine()).get_columns("extended_video")
    }


def test_check__package_alone_agrees(empty_db: DbSettings, tmp_path: Path) -> None:
    aana("migrate", cwd=tmp_path, db=empty_db)
    assert aana("check", cwd=tmp_path, db=empty_db).stdout.strip() == (
        "The database is at the newest revisions; models and migrations agree."
    )


@pytest.mark.parametrize(
    ("app_path", "expected"),
    [
        ("extended_video.app", "is not of the form module:attribute"),
        ("no_such_module:aana_app", "cannot import module 'no_such_module'"),
        ("extended_video.app:VideoProcessingStatus", "must name an AanaSDK instance"),
        ("extended_video.app:missing", "must name an AanaSDK instance, but 'missing'"),
    ],
)
def test_bad_app_path__one_line_error_naming_what_was_expected(
    empty_db: DbSettings, app_root: Path, app_path: str, expected: str
) -> None:
    result = aana("migrate", app_path, cwd=app_root, db=empty_db, check=False)

    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith("Error: ")
    assert expected in result.stderr


def test_database_at_an_unknown_revision__clear_error_and_no_change(
    empty_db: DbSettings, app_root: Path
) -> None:
    aana("revision", APP_PATH, "--autogenerate", "-m", "First", cwd=app_root, db=empty_db)
    aana("migrate", APP_PATH, cwd=app_root, db=empty_db)
    before = inspect(empty_db.get_engine()).get_table_names()

    result = aana("migrate", cwd=app_root, db=empty_db, check=False)

    assert result.returncode == 1
    assert "none of the known migrations defines" in result.stderr
    assert result.stderr.count("\n") == 1
    assert inspect(empty_db.get_engine()).get_table_names() == before
