import threading

import pytest
from sqlalchemy import select

from aana.core.models import Video
from aana.core.models.video import VideoMetadata
from aana.exceptions.db import MediaIdAlreadyExistsException, NotFoundException
from aana.storage.models import MediaEntity, VideoEntity
from tests.helpers import run_in_threads, save_contested_video


def test_documented_flow__save_a_video_by_url_offline(api):
    with api.new_session() as session:
        result = api.VideoRepository(session).save(
            Video(title="My Video", url="https://example.com/video.mp4")
        )
    with api.new_session() as session:
        stored = api.VideoRepository(session).read(result["media_id"])
        assert (stored.title, stored.url, stored.path) == (
            "My Video",
            "https://example.com/video.mp4",
            None,
        )
        assert stored.media_type == "video"


def test_save__no_path_stores_null_not_the_string_none(api, session):
    media_id = api.VideoRepository(session).save(Video(url="https://example.com/v.mp4"))["media_id"]
    raw = session.execute(select(VideoEntity.__table__.c.path).where(VideoEntity.id == media_id))
    assert raw.scalar_one() is None


def test_save__path_is_stored_as_text(api, session, tmp_path):
    file = tmp_path / "v.mp4"
    file.write_bytes(b"\x00")
    media_id = api.VideoRepository(session).save(Video(path=file, media_id="local-1"))["media_id"]
    assert api.VideoRepository(session).read(media_id).path == str(file)


def test_get_metadata(api, session):
    video = Video(url="https://example.com/v.mp4", title="T", description="D")
    api.VideoRepository(session).save(video)
    assert api.VideoRepository(session).get_metadata(video.media_id) == VideoMetadata(
        title="T", description="D"
    )


def test_read__missing_raises_not_found_or_returns_none(api, session):
    repository = api.VideoRepository(session)
    with pytest.raises(NotFoundException) as caught:
        repository.read("missing")
    assert (caught.value.table_name, caught.value.id) == ("video", "missing")
    assert repository.read("missing", check=False) is None


def test_create__duplicate_id_raises_and_session_stays_usable(api, session):
    repository = api.VideoRepository(session)
    repository.save(Video(url="https://example.com/1.mp4", media_id="dup"))
    with pytest.raises(MediaIdAlreadyExistsException) as caught:
        repository.save(Video(url="https://example.com/2.mp4", media_id="dup"))
    assert caught.value.media_id == "dup"
    assert repository.read("dup").url == "https://example.com/1.mp4"
    repository.save(Video(url="https://example.com/3.mp4", media_id="other"))
    assert repository.count_all() == 2


def test_create__two_writers_racing_on_one_id_exactly_one_wins(db):
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def writer() -> None:
        outcomes.append(save_contested_video(barrier))

    run_in_threads(writer, writer)
    assert sorted(outcomes) == ["duplicate", "won"]


def test_create__invalid_media_id_is_rejected_before_any_write(api, session):
    with pytest.raises(ValueError, match="invalid media id"):
        VideoEntity(id="x" * 37)
    with pytest.raises(ValueError, match="invalid media id"):
        VideoEntity(id="bad id!")
    assert api.VideoRepository(session).count_all() == 0


def test_check_media_exists_and_delete(api, session):
    repository = api.VideoRepository(session)
    repository.save(Video(url="https://example.com/v.mp4", media_id="v1"))
    assert repository.check_media_exists("v1")
    deleted = repository.delete("v1")
    assert deleted.id == "v1"
    assert not repository.check_media_exists("v1")
    assert api.MediaRepository(session).read("v1", check=False) is None
    with pytest.raises(NotFoundException):
        repository.delete("v1")
    assert repository.delete("v1", check=False) is None


def test_media_repository__reads_the_most_specific_class(api, session):
    api.VideoRepository(session).save(Video(url="https://example.com/v.mp4", media_id="poly"))
    session.expunge_all()
    media = api.MediaRepository(session).read("poly")
    assert type(media) is VideoEntity
    assert isinstance(media, MediaEntity)


def test_create_multiple__returns_persistent_entities_in_order(api, session):
    entities = [VideoEntity(id=f"m{i}", title=f"t{i}") for i in range(5)]
    created = api.VideoRepository(session).create_multiple(entities)
    assert [entity.id for entity in created] == [f"m{i}" for i in range(5)]
    session.expunge_all()
    assert [video.title for video in api.VideoRepository(session).list()] == [
        f"t{i}" for i in range(5)
    ]


def test_list_count_exists_update(api, session):
    repository = api.VideoRepository(session)
    for i in range(3):
        repository.save(Video(url=f"https://example.com/{i}.mp4", media_id=f"v{i}"))
    assert repository.count_all() == 3
    assert [video.id for video in repository.list(limit=2, offset=1)] == ["v1", "v2"]
    assert repository.exists("v0") and not repository.exists("v9")
    assert repository.update("v0", title="new").title == "new"
    with pytest.raises(AttributeError, match="no attribute"):
        repository.update("v0", nonsense=1)
    with pytest.raises(NotFoundException):
        repository.update("v9", title="x")
