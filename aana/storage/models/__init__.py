"""Entities (SQLAlchemy mapped classes) of the storage layer."""

from aana.storage.models.base import BaseEntity, TimeStampEntity
from aana.storage.models.caption import CaptionEntity
from aana.storage.models.media import MediaEntity
from aana.storage.models.task import Status, TaskEntity
from aana.storage.models.transcript import TranscriptEntity
from aana.storage.models.video import VideoEntity

__all__ = [
    "BaseEntity",
    "CaptionEntity",
    "MediaEntity",
    "Status",
    "TaskEntity",
    "TimeStampEntity",
    "TranscriptEntity",
    "VideoEntity",
]
