"""A database behind the models, and rows of subclasses no imported model defines."""

from __future__ import annotations

import pytest
from sqlalchemy import insert, text
from sqlalchemy.orm import Session

from aana.configs.db import DbSettings
from aana.configs.settings import Settings
from aana.core.models import Video
from aana.exceptions.db import (
    DatabaseException,
    DatabaseNotMigratedError,
    UnknownPolymorphicIdentityError,
)
from aana.sdk import AanaSDK
from aana.storage.models import MediaEntity, VideoEntity
from aana.storage.repository import TaskRepository, VideoRepository
from tests.acceptance.test_cli_errors import run_aana
from tests.helpers import BOTH_BACKENDS


@BOTH_BACKENDS
def test_repositories_on_an_unmigrated_database__say_run_aana_migrate(
    empty_db: DbSettings,
) -> None:
    with Session(empty_db.get_engine()) as session:
        with pytest.raises(DatabaseNotMigratedError, match="run `aana migrate APP`") as raised:
            TaskRepository(session).get_tasks()
        assert isinstance(raised.value, DatabaseException)
        if empty_db.datastore_type == "sqlite":
            assert raised.value.missing == ["the table 'tasks'"]
        else:
            assert '"tasks" does not exist' in str(raised.value)
        with pytest.raises(DatabaseNotMigratedError):
            TaskRepository(session).save("echo", {"n": 1})
        with pytest.raises(DatabaseNotMigratedError):
            VideoRepository(session).save(Video(url="https://example.com/v.mp4"))
        assert session.execute(text("SELECT 1")).scalar_one() == 1  # still usable


@BOTH_BACKENDS
def test_defer_on_an_unmigrated_database__says_run_aana_migrate(empty_db: DbSettings) -> None:
    app = AanaSDK(settings=Settings(db_config=empty_db))
    with pytest.raises(DatabaseNotMigratedError, match="aana migrate"):
        app.defer("echo", {"n": 1})


@BOTH_BACKENDS
def test_cli_tasks_list_on_an_unmigrated_database__one_line_and_exit_1(
    empty_db: DbSettings,
) -> None:
    result = run_aana("tasks", "list", db_config=empty_db.model_dump_json())
    assert result.returncode == 1
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("Error: The database lacks ")
    assert "`aana migrate APP`" in line


def test_model_column_not_migrated__named(db: DbSettings, session: Session) -> None:
    with db.get_engine().begin() as connection:
        connection.execute(text("ALTER TABLE video DROP COLUMN title"))
    with pytest.raises(DatabaseNotMigratedError) as raised:
        VideoRepository(session).list()
    if db.datastore_type == "sqlite":
        assert raised.value.missing == ["the column video.title"]
    else:
        assert "title" in str(raised.value)


def test_unknown_polymorphic_identity__typed_error_naming_it(
    db: DbSettings, session: Session
) -> None:
    VideoRepository(session).save(Video(url="https://example.com/a.mp4", media_id="known"))
    with db.get_engine().begin() as connection:
        connection.execute(insert(MediaEntity.__table__).values(id="odd", media_type="mystery"))
        connection.execute(insert(VideoEntity.__table__).values(id="odd"))
    with pytest.raises(UnknownPolymorphicIdentityError) as raised:
        VideoRepository(session).list()
    assert raised.value.identities == ["mystery"]
    assert "polymorphic_identity='mystery'" in str(raised.value)
    assert "subclass of VideoEntity" in str(raised.value)
    assert VideoRepository(session).read("known").id == "known"  # session still usable
