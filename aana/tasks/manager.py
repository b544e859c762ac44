"""The queue manager: the worker's and the application's operations on the tasks table.

Each method is one short transaction of statements from ``aana.storage.queue_sql``.
The hot path uses Core statements on a connection, not ORM objects: a worker writes
tens of thousands of rows a minute and needs none of the unit of work's bookkeeping.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, insert
from sqlalchemy.orm import Session

from aana.storage import queue_sql
from aana.storage.dialects import SQLITE_BEGIN_OPTION, notify_new_tasks
from aana.storage.errors import translate_errors
from aana.storage.models.task import Status, TaskEntity
from aana.storage.queue_sql import Attempt
from aana.storage.repository.task import TaskRepository, check_json

__all__ = ["Attempt", "Job", "QueueManager", "check_json"]


@dataclass(frozen=True)
class Job:
    """A claimed task, as a worker holds it."""

    attempt: Attempt
    endpoint: str
    data: Any
    user_id: str | None

    @property
    def id(self) -> uuid.UUID:
        """The task's id."""
        return self.attempt.task_id


class QueueManager:
    """Defer, claim, start, finish, heartbeat, hand back and sweep tasks.

    Args:
        engine: The engine of the database holding the ``tasks`` table.

    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @contextmanager
    def _writing(self, action: str) -> Iterator[Connection]:
        # On SQLite a write transaction takes the write lock up front (BEGIN IMMEDIATE).
        with translate_errors(action), self.engine.connect() as connection:
            connection = connection.execution_options(**{SQLITE_BEGIN_OPTION: "IMMEDIATE"})
            with connection.begin():
                yield connection

    def defer(
        self,
        endpoint: str,
        data_items: Sequence[Any],
        priority: int = 0,
        user_id: str | None = None,
    ) -> list[uuid.UUID]:
        """Store tasks as CREATED in one statement and wake idle workers.

        Raises:
            TypeError: An item cannot be stored as JSON; nothing is written.

        """
        for index, data in enumerate(data_items):
            check_json(data, "task data" if len(data_items) == 1 else f"task data [{index}]")
        ids = [uuid.uuid4() for _ in data_items]
        if not ids:
            return []
        rows = [
            {
                "id": task_id,
                "endpoint": endpoint,
                "data": data,
                "status": Status.CREATED,
                "priority": priority,
                "progress": 0.0,
                "num_retries": 0,
                "user_id": user_id,
            }
            for task_id, data in zip(ids, data_items, strict=True)
        ]
        with self._writing(f"deferring {len(ids)} task(s)") as connection:
            connection.execute(insert(TaskEntity), rows)
            notify_new_tasks(connection)
        return ids

    def claim(
        self,
        limit: int,
        max_retries: int,
        retryable_exceptions: Sequence[str] | None,
        maximum_active_tasks_per_user: int | None,
    ) -> list[Job]:
        """Claim up to ``limit`` tasks (ASSIGNED) through the repository."""
        with Session(self.engine) as session:
            tasks = TaskRepository(session).fetch_unprocessed_tasks(
                limit=limit,
                max_retries=max_retries,
                retryable_exceptions=retryable_exceptions,
                maximum_active_tasks_per_user=maximum_active_tasks_per_user,
            )
            return [
                Job(
                    Attempt(task.id, task.num_retries, task.assigned_at),  # type: ignore[arg-type]
                    task.endpoint,
                    task.data,
                    task.user_id,
                )
                for task in tasks
            ]

    def start(self, jobs: Sequence[Job]) -> list[Job]:
        """Mark claimed jobs RUNNING; returns those whose claim still held."""
        if not jobs:
            return []
        with self._writing("starting tasks") as connection:
            started = set(connection.scalars(queue_sql.start([job.attempt for job in jobs])))
        return [job for job in jobs if job.id in started]

    def finish(self, outcomes: Sequence[tuple[Attempt, Status, Any]]) -> set[uuid.UUID]:
        """Store results of running attempts; returns the ids whose result was written.

        An attempt that no longer holds its task (handed back, claimed again) is skipped.
        """
        if not outcomes:
            return set()
        with self._writing(f"finishing {len(outcomes)} task(s)") as connection:
            return set(connection.scalars(queue_sql.finish(outcomes)))

    def report_progress(self, attempt: Attempt, progress: float) -> bool:
        """Record progress; False if the attempt no longer holds its task."""
        with self._writing("reporting progress") as connection:
            return connection.execute(queue_sql.report_progress(attempt, progress)).rowcount > 0

    def heartbeat(self, attempts: Sequence[Attempt]) -> None:
        """Keep these attempts' tasks from expiring."""
        if attempts:
            with self._writing("sending heartbeats") as connection:
                connection.execute(queue_sql.heartbeat_attempts(attempts))

    def release(self, attempts: Sequence[Attempt]) -> set[uuid.UUID]:
        """Hand unfinished attempts back to the queue (NOT_FINISHED)."""
        if not attempts:
            return set()
        with self._writing("handing back tasks") as connection:
            return set(connection.scalars(queue_sql.release(attempts)))

    def sweep(
        self, execution_timeout: float, heartbeat_timeout: float, max_retries: int
    ) -> list[TaskEntity]:
        """Hand back or fail tasks whose worker went silent or ran too long."""
        with Session(self.engine, expire_on_commit=False) as session:
            return TaskRepository(session).update_expired_tasks(
                execution_timeout, heartbeat_timeout, max_retries
            )
