"""Entities (SQLAlchemy mapped classes) of the storage layer."""

from aana.storage.models.base import BaseEntity, TimeStampEntity
from aana.storage.models.caption import CaptionEntity
from aana.storage.models.media import MediaEntity
from aana.storage.models.task import Status, TaskEntity
from aana.storage.models.task_count import TaskCountEntity
from aana.storage.models.transcript import TranscriptEntity
from aana.storage.models.video import VideoEntity
from aana.storage.models.worker import WorkerEntity

PACKAGE_TABLES = frozenset(BaseEntity.metadata.tables)
"""The tables of aana's own entities, owned by the package's migrations.

Taken when this package is first imported, before any application can add its own
entities to ``BaseEntity.metadata``: an application's migrations never touch these.
"""

__all__ = [
    "BaseEntity",
    "CaptionEntity",
    "MediaEntity",
    "Status",
    "TaskCountEntity",
    "TaskEntity",
    "TimeStampEntity",
    "TranscriptEntity",
    "VideoEntity",
    "WorkerEntity",
]
