"""Repositories: the interface to stored entities."""

from aana.storage.repository.asynchronous import (
    AsyncBaseRepository,
    AsyncCaptionRepository,
    AsyncMediaRepository,
    AsyncTaskRepository,
    AsyncTranscriptRepository,
    AsyncVideoRepository,
)
from aana.storage.repository.base import BaseRepository
from aana.storage.repository.caption import CaptionRepository
from aana.storage.repository.media import MediaRepository
from aana.storage.repository.task import TaskRepository
from aana.storage.repository.transcript import TranscriptRepository
from aana.storage.repository.video import VideoRepository
from aana.storage.repository.worker import WorkerRepository

__all__ = [
    "AsyncBaseRepository",
    "AsyncCaptionRepository",
    "AsyncMediaRepository",
    "AsyncTaskRepository",
    "AsyncTranscriptRepository",
    "AsyncVideoRepository",
    "BaseRepository",
    "CaptionRepository",
    "MediaRepository",
    "TaskRepository",
    "TranscriptRepository",
    "VideoRepository",
    "WorkerRepository",
]
