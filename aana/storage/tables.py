"""The task queue's tables, in SQLAlchemy Core: ``tasks``, ``task_counts``, ``workers``.

The queue's statements (``aana.storage.queue_sql``) and a worker process need only
these: a worker process loads neither ``sqlalchemy.orm`` nor the entity modules unless
its application does. The entities ``TaskEntity``, ``TaskCountEntity`` and
``WorkerEntity`` map these same tables, and every entity's table lives in ``metadata``,
so the migrations see one schema.
"""

from __future__ import annotations

import enum
import uuid
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Index,
    Integer,
    MetaData,
    Table,
    Uuid,
    false,
    text,
)
from sqlalchemy import Enum as SqlEnum

from aana.storage.dialects import utcnow
from aana.storage.types import CheckedFloat, CheckedInteger, CheckedString, JsonType, UtcDateTime

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING_CONVENTION)
"""Every table of aana and of the applications' entities (``BaseEntity.metadata``)."""


def enum_values(enum_class: type[enum.Enum]) -> list[str]:
    """What an enum column stores: each member's value, as text."""
    return [str(member.value) for member in enum_class]


def enum_type(enum_class: type[enum.Enum]) -> SqlEnum:
    """An enum column's type: its values as text up to 64 characters, no database enum."""
    return SqlEnum(enum_class, native_enum=False, values_callable=enum_values, length=64)


class Status(str, enum.Enum):
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


def _clock(name: str, comment: str, **options: Any) -> Column[Any]:
    """A NOT NULL timestamp column whose default is the database clock."""
    return Column(
        name, UtcDateTime(), nullable=False, server_default=utcnow(), comment=comment, **options
    )


tasks = Table(
    "tasks",
    metadata,
    Column("id", Uuid(), primary_key=True, default=uuid.uuid4),
    Column(
        "endpoint",
        CheckedString(),
        nullable=False,
        comment="Name of the endpoint that runs the task",
    ),
    Column("data", JsonType, nullable=False, comment="The task's input (JSON)"),
    Column(
        "status",
        enum_type(Status),
        nullable=False,
        default=Status.CREATED,
        comment="Life-cycle state",
    ),
    Column("priority", CheckedInteger(), nullable=False, default=0, comment="Higher runs first"),
    Column("assigned_at", UtcDateTime(), comment="When last claimed (UTC)"),
    Column("completed_at", UtcDateTime(), comment="When it ended (UTC)"),
    Column("progress", CheckedFloat(), nullable=False, default=0.0, comment="Progress, 0 to 1"),
    Column("result", JsonType, comment="The output, or the error (JSON)"),
    Column(
        "num_retries",
        CheckedInteger(),
        nullable=False,
        default=0,
        comment="Times the task was claimed",
    ),
    Column("user_id", CheckedString(), index=True, comment="Who deferred the task"),
    _clock("scheduled_at", "When the task is due: claimable from then on (UTC)"),
    Column(
        "cancel_requested",
        Boolean(),
        nullable=False,
        default=False,
        server_default=false(),
        comment="Cancelled while running",
    ),
    Column(
        "period_key",
        CheckedString(DEDUPE_KEY_LENGTH),
        unique=True,
        comment="Periodic tasks: endpoint and period start, one task per period",
    ),
    Column(
        "dedupe_key",
        CheckedString(DEDUPE_KEY_LENGTH),
        comment="At most one unfinished task has this key",
    ),
    # The columns of ``TimeStampEntity``, which ``TaskEntity`` also derives from.
    _clock("created_at", "When the row was created (UTC)"),
    _clock("updated_at", "When the row last changed (UTC)", onupdate=utcnow()),
    # Every query by status (its leading column), and the dashboard: latest failures and
    # tasks ended in the last hour are a range of this index, not a sort of every
    # finished task. No index on status alone (migration 0007): each claim and each
    # result writes an entry into every index of status.
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
    tasks.c.priority.desc(),
    tasks.c.scheduled_at,
    tasks.c.id,
    postgresql_where=text(CLAIMABLE_SQL),
    sqlite_where=text(CLAIMABLE_SQL),
)

# De-duplication: one unfinished task per key, enforced by the database.
Index(
    "ix_tasks_dedupe_key",
    tasks.c.dedupe_key,
    unique=True,
    postgresql_where=text(f"dedupe_key IS NOT NULL AND {UNFINISHED_SQL}"),
    sqlite_where=text(f"dedupe_key IS NOT NULL AND {UNFINISHED_SQL}"),
)

task_counts = Table(
    "task_counts",
    metadata,
    Column(
        "id",
        BigInteger().with_variant(Integer(), "sqlite"),
        primary_key=True,
        comment="Row number",
    ),
    Column("endpoint", CheckedString(), nullable=False, comment="The tasks' endpoint"),
    Column("status", CheckedString(), nullable=False, comment="The tasks' status value"),
    Column("tasks", BigInteger(), nullable=False, comment="How many (a change may be < 0)"),
    Index("ix_task_counts_endpoint_status", "endpoint", "status"),
)
"""Tasks per endpoint and status, kept by triggers (see ``TaskCountEntity``)."""

workers = Table(
    "workers",
    metadata,
    Column("id", CheckedString(), primary_key=True, comment="host:pid:random, per process"),
    Column("hostname", CheckedString(), nullable=False, comment="Host the worker runs on"),
    Column("pid", CheckedInteger(), nullable=False, comment="Its process id on that host"),
    Column("concurrency", CheckedInteger(), nullable=False, comment="Tasks it runs at once"),
    Column(
        "running",
        CheckedInteger(),
        nullable=False,
        default=0,
        comment="Tasks it held at its heartbeat",
    ),
    Column(
        "processed", CheckedInteger(), nullable=False, default=0, comment="Tasks it finished so far"
    ),
    _clock("started_at", "First heartbeat (UTC)"),
    _clock("last_heartbeat", "Latest heartbeat (UTC)"),
    Index("ix_workers_last_heartbeat", "last_heartbeat"),
)
"""Worker processes, as their heartbeats report them (see ``WorkerEntity``)."""
