"""What repositories return is the ORM's own: identity, events, defaults, visible statements.

Every entity a repository returns must be the object ``session.get`` returns for its row,
loaded by the ORM (so ``load`` and ``refresh`` events fire), and every statement must
pass through the engine (so ``before_cursor_execute`` listeners and ``echo`` see it).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import event, inspect
from sqlalchemy.orm import Session

from aana.configs.db import DbSettings
from aana.storage.models import CaptionEntity, MediaEntity, Status, TaskEntity, VideoEntity
from aana.storage.repository import CaptionRepository, TaskRepository, VideoRepository
from aana.tasks.manager import QueueManager
from tests.helpers import statements_sent


class NamedCaption(CaptionEntity):
    """An application's single-table subclass: same table, its own identity."""

    __mapper_args__ = {"polymorphic_identity": "named_caption"}


@pytest.fixture
def events() -> Iterator[list[tuple[str, Any]]]:
    """(event name, entity) for every ``load`` and ``refresh`` of a caption or task."""
    seen: list[tuple[str, Any]] = []

    def on_load(target: Any, _context: Any) -> None:
        seen.append(("load", target))

    def on_refresh(target: Any, _context: Any, _attrs: Any) -> None:
        seen.append(("refresh", target))

    listeners = [(CaptionEntity, "load", on_load), (TaskEntity, "load", on_load)]
    listeners += [(CaptionEntity, "refresh", on_refresh), (TaskEntity, "refresh", on_refresh)]
    for target, name, listener in listeners:
        event.listen(target, name, listener, propagate=True)
    try:
        yield seen
    finally:
        for target, name, listener in listeners:
            event.remove(target, name, listener)


@pytest.fixture
def statements(db: DbSettings) -> Iterator[list[tuple[str, Any]]]:
    """Every statement the engine sends to the driver, with its parameters."""
    with statements_sent(db.get_engine()) as sent:
        yield sent


def test_save_all__single_table_subclass_entities_are_the_sessions_own(
    session: Session, events: list[tuple[str, Any]], statements: list[tuple[str, Any]]
):
    repository = CaptionRepository(session, NamedCaption)
    saved = repository.save_all("m", ["a", "b", "c"], [0.0, 1.0, 2.0], [0, 1, 2])

    assert [type(caption) for caption in saved] == [NamedCaption] * 3
    assert [caption.caption for caption in saved] == ["a", "b", "c"]
    for caption in saved:
        assert session.get(CaptionEntity, caption.id) is caption
        assert session.get(NamedCaption, caption.id) is caption
    assert [name for name, target in events if target in saved] == ["load"] * 3
    assert any("INSERT INTO caption" in sql for sql, _ in statements)
    assert all(caption.caption_type == "named_caption" for caption in saved)


def test_create_multiple__single_table_subclass_entities_are_the_sessions_own(
    session: Session, statements: list[tuple[str, Any]]
):
    repository = CaptionRepository(session, NamedCaption)
    entities = [NamedCaption(model="m", caption=str(i), frame_id=i, timestamp=i) for i in range(3)]
    created = repository.create_multiple(entities)

    assert created == entities
    for caption in created:
        assert session.get(CaptionEntity, caption.id) is caption
        assert caption.created_at is not None
    assert any("INSERT INTO caption" in sql for sql, _ in statements)


def test_read__returns_the_sessions_object_and_sees_other_sessions_commits(
    db: DbSettings, session: Session, events: list[tuple[str, Any]]
):
    repository = CaptionRepository(session, NamedCaption)
    (caption,) = repository.save_all("m", ["before"], [0.0], [0])

    with Session(db.get_engine()) as other:
        other.get(CaptionEntity, caption.id).caption = "after"  # type: ignore[union-attr]
        other.commit()

    events.clear()
    read = repository.read(caption.id)
    assert read is caption is session.get(CaptionEntity, caption.id)
    assert read.caption == "after"  # outside a transaction: read afresh
    assert [name for name, target in events if target is read] == ["refresh"]


def test_read__inside_a_users_transaction_keeps_the_sessions_state(session: Session):
    repository = CaptionRepository(session, NamedCaption)
    (caption,) = repository.save_all("m", ["stored"], [0.0], [0])
    with session.begin():
        caption.caption = "changed, not yet flushed"
        assert repository.read(caption.id).caption == "changed, not yet flushed"
    assert repository.read(caption.id).caption == "changed, not yet flushed"  # committed


def test_task_queue__claims_and_updates_return_the_sessions_objects_with_events(
    db: DbSettings,
    session: Session,
    events: list[tuple[str, Any]],
    statements: list[tuple[str, Any]],
):
    QueueManager(db.get_engine()).defer("ep", [{"n": 1}, {"n": 2}])  # Core insert, bulk
    repository = TaskRepository(session)

    claimed = repository.fetch_unprocessed_tasks(limit=10)
    assert len(claimed) == 2
    assert {name for name, target in events if target in claimed} == {"load"}
    for task in claimed:
        assert session.get(TaskEntity, task.id) is task
        assert task.status is Status.ASSIGNED
        # Python-side defaults of the entity applied to rows the queue inserted.
        assert task.priority == 0 and task.num_retries == 1 and task.progress == 0.0

    events.clear()
    updated = repository.update_status(claimed[0].id, Status.COMPLETED, progress=1.0, result={})
    assert updated is claimed[0]
    assert updated.status is Status.COMPLETED and updated.completed_at is not None
    assert [name for name, target in events if target is updated] == ["refresh"]
    assert any(sql.lstrip().startswith("UPDATE tasks") for sql, _ in statements)


def test_task_save__python_side_defaults_apply(session: Session):
    task = TaskRepository(session).save("ep", {"x": 1})
    assert task.status is Status.CREATED
    assert (task.priority, task.progress, task.num_retries) == (0, 0.0, 0)
    assert session.get(TaskEntity, task.id) is task


def test_echo__every_repository_statement_is_logged(
    db: DbSettings, session: Session, caplog: pytest.LogCaptureFixture
):
    engine = db.get_engine()
    engine.echo = True
    try:
        with caplog.at_level(logging.INFO, logger="sqlalchemy.engine.Engine"):
            repository = TaskRepository(session)
            task = repository.save("ep", {})
            repository.fetch_unprocessed_tasks(limit=1)
            repository.update_status(task.id, Status.RUNNING)
            CaptionRepository(session).save_all("m", ["a"], [0.0], [0])
    finally:
        engine.echo = False
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "INSERT INTO tasks" in logged
    assert logged.count("UPDATE tasks") >= 2
    assert "INSERT INTO caption" in logged


class AuditedCaption(CaptionEntity):
    """A subclass with a mapper ``before_insert`` listener: saved by the unit of work."""

    __mapper_args__ = {"polymorphic_identity": "audited_caption"}


audited: list[AuditedCaption] = []
event.listen(AuditedCaption, "before_insert", lambda _m, _c, target: audited.append(target))


def test_save__one_entity_is_loaded_persistent_and_clean_without_more_sql(
    session: Session, statements: list[tuple[str, Any]]
):
    saved = CaptionRepository(session, NamedCaption).save("m", "a cat", 1.5, 3)

    state = inspect(saved)
    assert state.persistent and not state.modified and not state.expired_attributes
    statements.clear()
    # Every column, server defaults included, is already loaded: reading sends nothing.
    assert (saved.caption_type, saved.caption, saved.frame_id) == ("named_caption", "a cat", 3)
    assert saved.created_at is not None and saved.updated_at is not None
    assert statements == []
    assert session.get(CaptionEntity, saved.id) is saved


def test_save__joined_entity_gets_its_python_side_default_id(session: Session):
    video = VideoEntity(url="https://example.com/v.mp4")  # no id: the column default makes one
    saved = VideoRepository(session).create(video)

    assert saved is video and saved.id and saved.media_type == "video"
    assert session.get(MediaEntity, saved.id) is saved


def test_save__a_class_with_insert_listeners_goes_through_the_unit_of_work(session: Session):
    audited.clear()
    saved = CaptionRepository(session, AuditedCaption).save("m", "watched", 0.0, 0)
    assert audited == [saved]
    assert session.get(CaptionEntity, saved.id) is saved
