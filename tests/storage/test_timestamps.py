from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import select, update

from aana.core.models import Video
from aana.storage.dialects import utcnow
from aana.storage.models import MediaEntity, VideoEntity
from aana.storage.repository import VideoRepository
from tests.helpers import backdate


def test_created_and_updated_at__aware_utc_with_milliseconds(session):
    before = datetime.now(UTC) - timedelta(seconds=1)
    VideoRepository(session).save(Video(url="https://example.com/v.mp4", media_id="t1"))
    session.expunge_all()
    video = VideoRepository(session).read("t1")
    assert video.created_at.tzinfo is not None
    assert video.created_at.utcoffset() == timedelta(0)
    assert before <= video.created_at <= datetime.now(UTC) + timedelta(seconds=1)


def test_created_and_updated_at__database_clock_values_keep_milliseconds(session):
    VideoRepository(session).save(Video(url="https://example.com/v.mp4", media_id="ms"))
    # One statement reads the database clock: the two values are 250 ms apart (plus the
    # microseconds between two readings of PostgreSQL's statement clock) if, and only
    # if, both the clock and the columns keep sub-second resolution.
    session.execute(
        update(MediaEntity)
        .where(MediaEntity.id == "ms")
        .values(created_at=utcnow(-0.25), updated_at=utcnow())
    )
    session.commit()
    created, updated = session.execute(
        select(MediaEntity.created_at, MediaEntity.updated_at).where(MediaEntity.id == "ms")
    ).one()
    assert timedelta(milliseconds=250) <= updated - created < timedelta(milliseconds=251)


def test_updated_at__moves_on_update(session):
    repository = VideoRepository(session)
    repository.save(Video(url="https://example.com/v.mp4", media_id="t2"))
    backdate(session, ["t2"], 60, columns=["created_at", "updated_at"], entity=MediaEntity)
    first = repository.read("t2")
    created, updated = first.created_at, first.updated_at
    repository.update("t2", title="changed")
    session.expunge_all()
    again = repository.read("t2")
    assert again.created_at == created
    assert again.updated_at - updated > timedelta(seconds=59)  # now, not the stored value


def test_timestamps__explicit_values_are_kept(session):
    when = datetime(2020, 5, 17, 12, 30, 15, 123000, tzinfo=timezone(timedelta(hours=2)))
    VideoRepository(session).create(VideoEntity(id="t3", created_at=when, updated_at=when))
    session.expunge_all()
    video = VideoRepository(session).read("t3")
    assert video.created_at == when and video.updated_at == when
    assert video.created_at.tzinfo == UTC


def test_timestamps__naive_datetime_is_refused(session):
    with pytest.raises(ValueError, match="naive datetime"):  # at construction, before any SQL
        VideoRepository(session).create(VideoEntity(id="t4", created_at=datetime(2020, 1, 1)))
    assert not VideoRepository(session).exists("t4")


def test_updated_at__readable_after_update_once_the_session_is_closed(db):
    from aana.storage.session import get_session

    with get_session() as session:
        repository = VideoRepository(session)
        repository.save(Video(url="https://example.com/v.mp4", media_id="t5"))
        backdate(session, ["t5"], 60, columns=["created_at", "updated_at"], entity=MediaEntity)
        updated = repository.update("t5", title="changed")
        created = repository.create(VideoEntity(id="t6"))
    assert updated.title == "changed"
    assert updated.updated_at - updated.created_at > timedelta(seconds=59)
    assert created.updated_at.tzinfo is not None
