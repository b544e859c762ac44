"""An application's subclass of VideoEntity, read and deleted through the base repositories.

The example application is imported in this process, which adds ``extended_video`` to
``BaseEntity.metadata``; the module fixture takes the table out again afterwards so that
later comparisons of models with migrations see only what they expect.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterator
from types import ModuleType

import pytest
from sqlalchemy import event, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from aana.configs.db import DbSettings
from aana.configs.settings import Settings
from aana.core.models import Video
from aana.sdk import AanaSDK
from aana.storage.models import BaseEntity, MediaEntity, VideoEntity
from aana.storage.repository import (
    AsyncMediaRepository,
    AsyncVideoRepository,
    MediaRepository,
    VideoRepository,
)
from tests.helpers import BOTH_BACKENDS, REPO_ROOT

EXAMPLES = REPO_ROOT / "examples"


@pytest.fixture(scope="module")
def example() -> Iterator[ModuleType]:
    sys.path.insert(0, str(EXAMPLES))
    try:
        from extended_video import app

        yield app
    finally:
        sys.path.remove(str(EXAMPLES))
        BaseEntity.metadata.remove(BaseEntity.metadata.tables["extended_video"])


@pytest.fixture
def app_session(example: ModuleType, empty_db: DbSettings) -> Iterator[Session]:
    """A session on a database migrated with the package's and the example's migrations."""
    settings = Settings(db_config=empty_db)
    AanaSDK(settings=settings, migrations_path=EXAMPLES / "extended_video" / "migrations").migrate()
    with Session(empty_db.get_engine(), expire_on_commit=False) as session:
        yield session


def saved(example: ModuleType, session: Session, duration: float = 42.0) -> str:
    video = Video(title="My Video", url="https://example.com/video.mp4")
    example.ExtendedVideoRepository(session).save(video, duration)
    session.expunge_all()  # later reads come from the database, not the identity map
    return video.media_id


@BOTH_BACKENDS
def test_video_repository_read__returns_the_extended_entity_with_its_columns(
    example: ModuleType, app_session: Session
) -> None:
    media_id = saved(example, app_session)

    entity = VideoRepository(app_session).read(media_id)
    app_session.close()  # the extra columns were loaded with the entity

    assert isinstance(entity, example.ExtendedVideoEntity)
    assert entity.duration == 42.0
    assert entity.status is example.VideoProcessingStatus.CREATED
    assert entity.title == "My Video"


@BOTH_BACKENDS
def test_media_repository_delete__removes_every_row_of_the_video(
    example: ModuleType, app_session: Session
) -> None:
    media_id = saved(example, app_session)

    MediaRepository(app_session).delete(media_id)

    for entity in (MediaEntity, VideoEntity, example.ExtendedVideoEntity):
        rows = app_session.scalar(select(func.count()).select_from(entity.__table__))
        assert rows == 0, entity.__tablename__


@BOTH_BACKENDS
def test_from_parent__turns_a_stored_video_into_an_extended_one(
    example: ModuleType, app_session: Session
) -> None:
    video = Video(title="Plain", url="https://example.com/plain.mp4")
    VideoRepository(app_session).save(video)
    plain = VideoRepository(app_session).read(video.media_id)

    extended = example.ExtendedVideoEntity.from_parent(plain, duration=3.5)
    assert extended.id == plain.id
    assert extended.title == "Plain"
    assert extended.media_type == "extended_video"
    app_session.delete(plain)
    app_session.flush()
    app_session.add(extended)
    app_session.commit()
    app_session.expunge_all()

    stored = VideoRepository(app_session).read(video.media_id)
    assert isinstance(stored, example.ExtendedVideoEntity)
    assert (stored.duration, stored.url) == (3.5, "https://example.com/plain.mp4")


@BOTH_BACKENDS
def test_saved_and_read_entities__are_the_objects_session_get_returns(
    example: ModuleType, app_session: Session
) -> None:
    loads: list[object] = []

    def on_load(target: object, _context: object) -> None:
        loads.append(target)

    repository = example.ExtendedVideoRepository(app_session)
    saved_entity = repository.save(Video(title="Mine", url="https://example.com/m.mp4"), 7.0)
    assert app_session.get(example.ExtendedVideoEntity, saved_entity.id) is saved_entity
    assert repository.read(saved_entity.id) is saved_entity
    assert VideoRepository(app_session).read(saved_entity.id) is saved_entity

    app_session.expunge_all()
    event.listen(example.ExtendedVideoEntity, "load", on_load)
    try:
        read = VideoRepository(app_session).read(saved_entity.id)
    finally:
        event.remove(example.ExtendedVideoEntity, "load", on_load)
    assert loads == [read]
    assert app_session.get(VideoEntity, saved_entity.id) is read
    assert app_session.get(example.ExtendedVideoEntity, saved_entity.id) is read


def async_repositories(example: ModuleType) -> list[type]:
    """The documentation's repository on the async base: written by hand, and generated."""
    entity, status_enum = example.ExtendedVideoEntity, example.VideoProcessingStatus

    class HandWritten(AsyncVideoRepository[entity]):  # type: ignore[valid-type]
        def __init__(self, session: AsyncSession):
            super().__init__(session, entity)

        async def save(self, video: Video, duration: float | None = None) -> dict:
            video_entity = entity(
                id=video.media_id,
                path=str(video.path),
                url=video.url,
                title=video.title,
                description=video.description,
                duration=duration,
            )
            await self.create(video_entity)
            return video_entity

        async def get_status(self, media_id: str) -> object:
            return (await self.read(media_id)).status

        async def update_status(self, media_id: str, status: object) -> None:
            video_entity = await self.read(media_id)
            video_entity.status = status
            await self.session.commit()

    class Generated(AsyncVideoRepository[entity], sync=example.ExtendedVideoRepository):  # type: ignore[valid-type]
        pass

    assert status_enum.RUNNING.value == "running"
    return [HandWritten, Generated]


@BOTH_BACKENDS
@pytest.mark.parametrize("kind", [0, 1], ids=["hand_written", "generated"])
def test_async_extended_repository__saves_reads_and_updates_like_the_sync_one(
    example: ModuleType, app_session: Session, empty_db: DbSettings, kind: int
) -> None:
    repository_class = async_repositories(example)[kind]
    running = example.VideoProcessingStatus.RUNNING

    async def run() -> tuple:
        async with AsyncSession(empty_db.get_async_engine(), expire_on_commit=False) as session:
            repository = repository_class(session)
            video = Video(title="Async", url="https://example.com/a.mp4")
            saved_entity = await repository.save(video, 12.5)
            await repository.update_status(video.media_id, running)
            status = await repository.get_status(video.media_id)
        async with AsyncSession(empty_db.get_async_engine(), expire_on_commit=False) as session:
            read = await AsyncVideoRepository(session).read(video.media_id)
            as_media = await AsyncMediaRepository(session).list()
        await empty_db.get_async_engine().dispose()
        return saved_entity, status, read, as_media

    saved_entity, status, read, as_media = asyncio.run(run())
    assert isinstance(saved_entity, example.ExtendedVideoEntity)
    assert status is running
    # Read through the base repositories: the subclass, its own columns loaded.
    assert isinstance(read, example.ExtendedVideoEntity) and type(as_media[0]) is type(read)
    assert (read.duration, read.status, read.title) == (12.5, running, "Async")
