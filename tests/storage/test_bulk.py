"""The bulk insert path behind create_multiple and save_all."""

import uuid

from sqlalchemy import inspect, select

from aana.storage.models import CaptionEntity, Status, TaskEntity, VideoEntity
from aana.storage.repository import BaseRepository, CaptionRepository, TaskRepository


def test_create_multiple__single_table_entities_become_persistent_and_clean(session):
    entities = [
        CaptionEntity(model="m", caption=f"c{i}", frame_id=i, timestamp=i) for i in range(4)
    ]
    created = BaseRepository(session, CaptionEntity).create_multiple(entities)
    assert created == entities
    ids = [entity.id for entity in created]
    assert ids == sorted(ids) and len(set(ids)) == 4
    for entity in created:
        state = inspect(entity)
        assert state.persistent and not state.modified
        assert session.get(CaptionEntity, entity.id) is entity
        assert entity.caption_type == "caption"
        assert entity.created_at.tzinfo is not None and entity.updated_at == entity.created_at


def test_create_multiple__changes_after_insert_are_saved(session):
    (entity,) = BaseRepository(session, CaptionEntity).create_multiple(
        [CaptionEntity(model="m", caption="old", frame_id=0, timestamp=0)]
    )
    entity.caption = "new"
    session.commit()
    session.expunge_all()
    assert session.get(CaptionEntity, entity.id).caption == "new"


def test_create_multiple__python_defaults_and_given_ids(session):
    given = uuid.uuid4()
    tasks = [TaskEntity(endpoint="ep", data={"n": 1}, id=given), TaskEntity(endpoint="ep", data=[])]
    TaskRepository(session).create_multiple(tasks)
    assert tasks[0].id == given and isinstance(tasks[1].id, uuid.UUID)
    assert all(task.status == Status.CREATED and task.priority == 0 for task in tasks)
    session.expunge_all()
    stored = session.scalars(select(TaskEntity).order_by(TaskEntity.id)).all()
    assert sorted(task.id for task in stored) == sorted(task.id for task in tasks)
    assert {repr(task.data) for task in stored} == {"{'n': 1}", "[]"}


def test_create_multiple__joined_inheritance_uses_the_unit_of_work(session):
    videos = [VideoEntity(id=f"v{i}", title=f"t{i}") for i in range(3)]
    BaseRepository(session, VideoEntity).create_multiple(videos)
    session.expunge_all()
    assert [v.title for v in session.scalars(select(VideoEntity).order_by(VideoEntity.id))] == [
        "t0",
        "t1",
        "t2",
    ]


def test_save_all__twice_continues_the_ids(session):
    repository = CaptionRepository(session)
    first = repository.save_all("m", ["a", "b"], [0.0, 1.0], [0, 1])
    second = repository.save_all("m", ["c"], [2.0], [2])
    assert second[0].id == first[-1].id + 1
    assert repository.count_all() == 3


def test_save_all__stored_values_match_the_returned_entities(session):
    entities = CaptionRepository(session).save_all("m", ["x", "y"], [0.5, 1.25], [3, 4])
    session.expunge_all()
    for entity in entities:
        stored = session.get(CaptionEntity, entity.id)
        assert (stored.caption, stored.timestamp, stored.frame_id, stored.model) == (
            entity.caption,
            entity.timestamp,
            entity.frame_id,
            entity.model,
        )
        assert stored.created_at == entity.created_at


def test_create_multiple__entities_setting_different_attributes_keep_their_defaults(session):
    tasks = [TaskEntity(endpoint="ep", data={}, priority=5), TaskEntity(endpoint="ep", data={})]
    TaskRepository(session).create_multiple(tasks)
    session.expunge_all()
    assert sorted(task.priority for task in session.scalars(select(TaskEntity))) == [0, 5]
