"""Tasks of the durable task queue."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import Enum
from typing import Any, ClassVar

from sqlalchemy import Index, text
from sqlalchemy.orm import Mapped, mapped_column

from aana.storage.models.base import BaseEntity, TimeStampEntity


class Status(str, Enum):
    """The life cycle of a task."""

    CREATED = "created"
    ASSIGNED = "assigned"
    COMPLETED = "completed"
    RUNNING = "running"
    FAILED = "failed"
    NOT_FINISHED = "not_finished"


CLAIMABLE_SQL = "status IN ('created', 'not_finished')"


class TaskEntity(BaseEntity, TimeStampEntity):
    """A unit of deferred work: which endpoint to call with which data, and how it went."""

    __tablename__ = "tasks"
    repr_fields: ClassVar[tuple[str, ...]] = ("endpoint", "status", "user_id", "priority")

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    endpoint: Mapped[str] = mapped_column(comment="Name of the endpoint that runs the task")
    data: Mapped[Any] = mapped_column(comment="The task's input (JSON)")
    status: Mapped[Status] = mapped_column(default=Status.CREATED, comment="Life-cycle state")
    priority: Mapped[int] = mapped_column(default=0, comment="Higher runs first")
    assigned_at: Mapped[datetime | None] = mapped_column(comment="When last claimed (UTC)")
    completed_at: Mapped[datetime | None] = mapped_column(comment="When it ended (UTC)")
    progress: Mapped[float] = mapped_column(default=0.0, comment="Progress, 0 to 1")
    result: Mapped[Any | None] = mapped_column(comment="The output, or the error (JSON)")
    num_retries: Mapped[int] = mapped_column(default=0, comment="Times the task was claimed")
    user_id: Mapped[str | None] = mapped_column(index=True, comment="Who deferred the task")

    __table_args__ = (Index("ix_tasks_status", "status"),)


# The hot queue query: only claimable tasks, in exactly the claim order, so a claim reads
# the first rows of the index instead of sorting the whole queue.
Index(
    "ix_tasks_claimable",
    TaskEntity.priority.desc(),
    TaskEntity.created_at,
    TaskEntity.id,
    postgresql_where=text(CLAIMABLE_SQL),
    sqlite_where=text(CLAIMABLE_SQL),
)
