"""Tasks of the durable task queue."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, ClassVar

from sqlalchemy.orm import Mapped

from aana.storage.models.base import BaseEntity, TimeStampEntity
from aana.storage.tables import (
    CLAIMABLE_SQL,
    DEDUPE_KEY_LENGTH,
    STATUS_CHECK_SQL,
    UNFINISHED_SQL,
    Status,
    tasks,
)

__all__ = [
    "CLAIMABLE_SQL",
    "DEDUPE_KEY_LENGTH",
    "STATUS_CHECK_SQL",
    "UNFINISHED_SQL",
    "Status",
    "TaskEntity",
]


class TaskEntity(BaseEntity, TimeStampEntity):
    """A unit of deferred work: which endpoint to call with which data, and how it went.

    It maps the Core table ``aana.storage.tables.tasks``, which the queue's statements and
    the worker processes use without the ORM.
    """

    __table__ = tasks
    __tablename__ = tasks.name
    repr_fields: ClassVar[tuple[str, ...]] = ("endpoint", "status", "user_id", "priority")

    id: Mapped[uuid.UUID]
    endpoint: Mapped[str]
    data: Mapped[Any]
    status: Mapped[Status]
    priority: Mapped[int]
    assigned_at: Mapped[datetime | None]
    completed_at: Mapped[datetime | None]
    progress: Mapped[float]
    result: Mapped[Any | None]
    num_retries: Mapped[int]
    user_id: Mapped[str | None]
    scheduled_at: Mapped[datetime]
    cancel_requested: Mapped[bool]
    period_key: Mapped[str | None]
    dedupe_key: Mapped[str | None]
