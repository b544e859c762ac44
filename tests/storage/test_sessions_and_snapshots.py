"""Two sessions (two workers, two requests) see each other's commits and can both write."""

import sqlite3

import pytest
from sqlalchemy import Integer, String, func
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from aana.core.models import Video
from aana.exceptions.db import (
    ConstraintViolationException,
    NotFoundException,
)
from aana.storage.models import Status
from aana.storage.repository import (
    BaseRepository,
    CaptionRepository,
    TaskRepository,
    TranscriptRepository,
    VideoRepository,
)
from aana.storage.session import get_session


def test_reads__see_what_another_session_committed_since(db):
    with get_session() as mine, get_session() as theirs:
        task = TaskRepository(mine).save("ep", {})
        assert TaskRepository(mine).read(task.id).status == Status.CREATED
        TaskRepository(theirs).update_status(task.id, Status.COMPLETED)
        assert TaskRepository(mine).read(task.id).status == Status.COMPLETED
        assert [t.status for t in TaskRepository(mine).get_tasks()] == [Status.COMPLETED]


def test_write_after_read__while_another_session_commits(db):
    with get_session() as mine, get_session() as theirs:
        mine_videos = VideoRepository(mine)
        assert not mine_videos.check_media_exists("v1")
        VideoRepository(theirs).save(Video(url="https://example.com/0.mp4", media_id="v0"))
        if not mine_videos.check_media_exists("v1"):
            mine_videos.save(Video(url="https://example.com/1.mp4", media_id="v1"))
        task = TaskRepository(mine).save("ep", {})
        TaskRepository(mine).get_active_tasks()
        TaskRepository(theirs).save("ep", {})
        TaskRepository(mine).update_status(task.id, Status.RUNNING)
        assert mine_videos.count_all() == 2


def test_failed_read__is_a_database_exception_and_the_session_stays_usable(session):
    # No row can have this id (the column type refuses it before any SQL), on both backends
    with pytest.raises(NotFoundException):
        TranscriptRepository(session).read("not-an-integer")
    saved = CaptionRepository(session).save("m", "still works", 0.0, 0)
    session.expunge_all()
    assert CaptionRepository(session).read(saved.id).caption == "still works"


def test_save_all__driver_errors_become_aana_exceptions_nothing_written(session):
    repository = CaptionRepository(session)
    with pytest.raises(ConstraintViolationException):
        repository.save_all("m", ["a", None], [0.0, 1.0], [0, 1])
    assert repository.count_all() == 0
    assert repository.save_all("m", ["b"], [0.0], [0])[0].caption == "b"


class OtherBase(DeclarativeBase):
    pass


class Labelled(OtherBase):
    __tablename__ = "labelled"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String)
    label: Mapped[str] = mapped_column(String, default=func.upper("auto"))
    copied: Mapped[str] = mapped_column(
        String, default=lambda context: context.get_current_parameters()["name"] + "!"
    )


def test_create_multiple__defaults_computed_by_the_database_or_context_are_kept(db):
    OtherBase.metadata.create_all(db.get_engine())
    with get_session() as session:
        repository = BaseRepository(session, Labelled)
        created = repository.create_multiple([Labelled(name="x"), Labelled(name="y")])
        session.expunge_all()
        stored = {row.name: (row.label, row.copied) for row in repository.list()}
    assert len(created) == 2
    assert stored == {"x": ("AUTO", "x!"), "y": ("AUTO", "y!")}


def in_driver_transaction(dbapi_connection) -> bool:
    """Whether a statement sent now runs inside a transaction (not on its own)."""
    if isinstance(dbapi_connection, sqlite3.Connection):
        return dbapi_connection.in_transaction  # no BEGIN sent: each statement commits
    return not dbapi_connection.autocommit  # psycopg sends BEGIN first unless autocommit


def test_reads_and_one_statement_writes__run_in_autocommit_one_statement_each(db):
    from sqlalchemy import event

    seen: list[tuple[str, bool]] = []

    def before_cursor_execute(connection, _cursor, statement, *_args):
        driver = connection.connection.dbapi_connection
        seen.append((statement.split()[0], in_driver_transaction(driver)))

    engine = db.get_engine()
    with get_session() as session:
        tasks = TaskRepository(session)
        task = tasks.save("ep", {})
        event.listen(engine, "before_cursor_execute", before_cursor_execute)
        try:
            tasks.read(task.id)
            tasks.update_status(task.id, Status.RUNNING)
            tasks.fetch_unprocessed_tasks(limit=1)
            CaptionRepository(session).save("m", "c", 0.0, 0)
        finally:
            event.remove(engine, "before_cursor_execute", before_cursor_execute)
        assert not session.in_transaction()
    # One statement each, none of them inside a transaction (no BEGIN/COMMIT round trips).
    # The claim is one statement too: WITH candidates AS MATERIALIZED (...) UPDATE ...
    assert seen == [("SELECT", False), ("UPDATE", False), ("WITH", False), ("INSERT", False)]


def test_reads_inside_a_users_transaction__are_part_of_it(db):
    with get_session() as session:
        task = TaskRepository(session).save("ep", {})
        with session.begin():
            assert TaskRepository(session).read(task.id) is task  # the identity map's
            assert session.in_transaction()


def test_after_reads__your_own_statements_run_in_a_real_transaction(db):
    from sqlalchemy import select, update

    from aana.storage.models import CaptionEntity, TaskEntity

    with get_session() as session:
        tasks = TaskRepository(session)
        task = tasks.save("ep", {})
        tasks.read(task.id)  # the session now holds a transaction begun for reads alone
        assert session.in_transaction()
        session.execute(update(TaskEntity).values(priority=5))  # yours: a real transaction
        session.add(CaptionEntity(model="m", caption="c", frame_id=0, timestamp=0.0))
        session.flush()
        session.rollback()  # so both are undone
    with get_session() as other:
        assert other.scalar(select(TaskEntity.priority)) == 0
        assert other.scalar(select(func.count()).select_from(CaptionEntity)) == 0


def test_after_reads__commit_keeps_your_changes_and_reads_stay_fresh(db):
    from aana.storage.models import TaskEntity

    with get_session() as mine, get_session() as theirs:
        task = TaskRepository(mine).save("ep", {})
        TaskRepository(mine).read(task.id)
        mine.get(TaskEntity, task.id).priority = 3
        mine.commit()
        TaskRepository(theirs).update_status(task.id, Status.RUNNING)
        fresh = TaskRepository(mine).read(task.id)
        assert (fresh.priority, fresh.status) == (3, Status.RUNNING)
