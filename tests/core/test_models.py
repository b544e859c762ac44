import uuid

import pytest
from pydantic import ValidationError

from aana.core.models import (
    AsrSegment,
    AsrTranscriptionInfo,
    Media,
    TimeInterval,
    Video,
    VideoMetadata,
)


def test_video__url_only_downloads_nothing():
    video = Video(title="My Video", url="https://example.com/video.mp4")
    assert video.path is None and video.content is None
    assert uuid.UUID(video.media_id)
    assert video.description == ""


def test_media__needs_a_source():
    with pytest.raises(ValueError, match="at least one of path, url or content"):
        Media()


def test_media__missing_path_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        Video(path=tmp_path / "nope.mp4")


def test_media__existing_path(tmp_path):
    file = tmp_path / "v.mp4"
    file.write_bytes(b"\x00")
    assert Video(path=str(file)).path == file


@pytest.mark.parametrize("media_id", ["", "a" * 37, "has space", "semi;colon", "../x"])
def test_media__invalid_id_is_a_value_error(media_id):
    with pytest.raises(ValueError, match="invalid media id"):
        Video(url="https://example.com/v.mp4", media_id=media_id)


def test_media__36_character_id_is_fine():
    assert Video(content=b"x", media_id="a" * 36).media_id == "a" * 36


def test_asr__confidence_is_a_probability():
    with pytest.raises(ValidationError):
        AsrTranscriptionInfo(language="en", language_confidence=1.5)
    with pytest.raises(ValidationError):
        TimeInterval(start=-1, end=2)
    segment = AsrSegment(text="hi", time_interval=TimeInterval(start=0, end=1))
    assert segment.words == [] and segment.speaker is None


def test_video_metadata__duration_optional():
    assert VideoMetadata(title="t", description="d").duration is None
