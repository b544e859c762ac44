"""Tasks of the durable task queue."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import Enum
from typing import Any, ClassVar

from sqlalchemy import CheckConstraint, Index, false, text
from sqlalchemy.orm import Mapped, mapped_column

from aana.storage.dialects import utcnow
from aana.storage.models.base import BaseEntity, TimeStampEntity
from aana.storage.types import CheckedString


class Status(str, Enum):
    """The life cycle of a task."""

    CREATED = "created"
    ASSIGNED = "assigned"
    COMPLETED = "completed"
    RUNNING = "running"
    FAILED = "failed"
    NOT_FINISHED = "not_finished"
    CANCELLED = "cancelled"


CLAIMABLE_SQL = "status IN ('created', 'not_finished')"
"""Tasks waiting for a worker: the condition of the claim-order index, written once."""

UNFINISHED_SQL = "status IN ('created', 'assigned', 'running', 'not_finished')"
"""Tasks that will still run or are running: the condition of the de-duplication index."""

STATUS_CHECK_SQL = "status IN ({})".format(", ".join(f"'{status.value}'" for status in Status))

DEDUPE_KEY_LENGTH = 255
"""Longest ``dedupe_key``, in characters."""


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
    scheduled_at: Mapped[datetime] = mapped_column(
        server_default=utcnow(), comment="When the task is due: claimable from then on (UTC)"
    )
    cancel_requested: Mapped[bool] = mapped_column(
        default=False, server_default=false(), comment="Cancelled while running"
    )
    period_key: Mapped[str | None] = mapped_column(
        CheckedString(DEDUPE_KEY_LENGTH),
        unique=True,
        comment="Periodic tasks: endpoint and period start, one task per period",
    )
    dedupe_key: Mapped[str | None] = mapped_column(
        CheckedString(DEDUPE_KEY_LENGTH), comment="At most one unfinished task has this key"
    )

    __table_args__ = (
        # Every query by status (its leading column), and the dashboard: latest
        # failures and tasks ended in the last hour are a range of this index, not a
        # sort of every finished task. No index on status alone (migration 0007): each
        # claim and each result writes an entry into every index of status.
        Index("ix_tasks_status_completed_at", "status", "completed_at"),
        # Listings, newest first (the dashboard, GET /tasks, aana tasks list).
        Index("ix_tasks_created_at", "created_at", "id"),
        CheckConstraint(STATUS_CHECK_SQL, name="status"),
    )


# The hot queue query: only claimable tasks, in exactly the claim order (priority, then
# due time), so a claim reads the first rows of the index instead of sorting the whole
# queue. The due test (scheduled_at <= now) is answered from the index entry itself:
# tasks not yet due sort after the due ones of their priority and are never fetched.
Index(
    "ix_tasks_claimable",
    TaskEntity.priority.desc(),
    TaskEntity.scheduled_at,
    TaskEntity.id,
    postgresql_where=text(CLAIMABLE_SQL),
    sqlite_where=text(CLAIMABLE_SQL),
)

# De-duplication: one unfinished task per key, enforced by the database.
Index(
    "ix_tasks_dedupe_key",
    TaskEntity.dedupe_key,
    unique=True,
    postgresql_where=text(f"dedupe_key IS NOT NULL AND {UNFINISHED_SQL}"),
    sqlite_where=text(f"dedupe_key IS NOT NULL AND {UNFINISHED_SQL}"),
)
