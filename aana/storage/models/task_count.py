"""Tasks per endpoint and status, kept by the database itself (*ours*).

Counting ``tasks`` reads every row: a few hundred milliseconds at a million tasks. These
rows hold the same numbers, written by triggers on ``tasks`` (migration
``0006_task_counts``) in the transaction that changes a task, so they are exact at every
snapshot whatever writes the tasks: the queue, a repository, plain SQL.

On PostgreSQL the triggers only ever *add* rows (one per endpoint and status a
statement changed, holding the change): no two writers wait on the same row, so the
counts never serialise the queue. ``TaskRepository.compact_counts`` folds them back into
one row per endpoint and status; workers run it with their heartbeats. On SQLite, which
has one writer at a time, the triggers keep exactly one row per endpoint and status.
"""

from __future__ import annotations

from sqlalchemy.orm import Mapped

from aana.storage.models.base import BaseEntity
from aana.storage.tables import task_counts


class TaskCountEntity(BaseEntity):
    """A number of tasks of one endpoint and status, or a change to it.

    The tasks of an endpoint in a status are the sum of ``tasks`` over its rows.
    """

    __table__ = task_counts
    __tablename__ = task_counts.name

    id: Mapped[int]
    endpoint: Mapped[str]
    status: Mapped[str]
    tasks: Mapped[int]
