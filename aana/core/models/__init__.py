"""Data models shared by the SDK: media, videos, transcripts, captions."""

from aana.core.models.asr import (
    AsrSegment,
    AsrSegments,
    AsrTranscription,
    AsrTranscriptionInfo,
    AsrWord,
)
from aana.core.models.captions import Caption, CaptionsList
from aana.core.models.media import Media, MediaId
from aana.core.models.time import TimeInterval
from aana.core.models.video import Video, VideoMetadata

__all__ = [
    "AsrSegment",
    "AsrSegments",
    "AsrTranscription",
    "AsrTranscriptionInfo",
    "AsrWord",
    "Caption",
    "CaptionsList",
    "Media",
    "MediaId",
    "TimeInterval",
    "Video",
    "VideoMetadata",
]
