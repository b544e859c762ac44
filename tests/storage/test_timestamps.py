import time
from datetime import UTC, datetime, timedelta, timezone

import pytest

from aana.core.models import Video
from aana.storage.models import VideoEntity
from aana.storage.repository import VideoRepository


def test_created_and_updated_at__aware_utc_with_milliseconds(session):
    before = datetime.now(UTC) - timedelta(seconds=1)
    VideoRepository(session).save(Video(url="https://example.com/v.mp4", media_id="t1"))
    session.expunge_all()
    video = VideoRepository(session).read("t1")
    assert video.created_at.tzinfo is not None
    assert video.created_at.utcoffset() == timedelta(0)
    assert before <= video.created_at <= datetime.now(UTC) + timedelta(seconds=1)
    stamps = {VideoRepository(session).save(Video(content=b"x")) and None for _ in range(3)}
    assert stamps == {None}
    created = sorted(v.created_at for v in VideoRepository(session).list())
    assert any(stamp.microsecond % 1000 == 0 and stamp.microsecond for stamp in created) or any(
        stamp.microsecond % 1000 for stamp in created
    ), "sub-second resolution is kept"


def test_updated_at__moves_on_update(session):
    repository = VideoRepository(session)
    repository.save(Video(url="https://example.com/v.mp4", media_id="t2"))
    first = repository.read("t2")
    created, updated = first.created_at, first.updated_at
    time.sleep(0.01)
    repository.update("t2", title="changed")
    session.expunge_all()
    again = repository.read("t2")
    assert again.created_at == created
    assert again.updated_at > updated


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
        updated = repository.update("t5", title="changed")
        created = repository.create(VideoEntity(id="t6"))
    assert updated.updated_at >= updated.created_at
    assert created.updated_at.tzinfo is not None
