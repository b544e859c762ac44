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

from sqlalchemy import Connection, Engine
from sqlalchemy.orm import Session

from aana.storage import queue_sql
from aana.storage.bulk import BulkInsert, Encoded, Same, Values
from aana.storage.dialects import SQLITE_BEGIN_OPTION, notify_new_tasks, serialize_claims
from aana.storage.errors import translate_errors
from aana.storage.models.task import Status, TaskEntity
from aana.storage.queue_sql import FINISHED, Attempt
from aana.storage.repository.task import TaskRepository, check_json

__all__ = ["Attempt", "Job", "QueueManager", "check_json"]


@dataclass(frozen=True)
class ClaimRequest:
    """What a worker asks for: how many tasks, and which are eligible."""

    limit: int
    max_retries: int
    retryable_exceptions: Sequence[str] | None
    maximum_active_tasks_per_user: int | None


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
        bulk_tasks = BulkInsert.of(TaskEntity)
        assert bulk_tasks is not None, "the tasks table takes bulk inserts"
        self._bulk_tasks = bulk_tasks

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
        encoded = [
            check_json(data, "task data" if len(data_items) == 1 else f"task data [{index}]")
            for index, data in enumerate(data_items)
        ]
        ids = [uuid.uuid4() for _ in data_items]
        if not ids:
            return []
        columns: dict[str, Values] = {
            "id": ids,
            "endpoint": Same(endpoint),
            "data": Encoded(encoded),
            "priority": Same(priority),
            "user_id": Same(user_id),
        }
        with self._writing(f"deferring {len(ids)} task(s)") as connection:
            self._bulk_tasks.insert(connection, columns, len(ids), clock=False)
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
        with Session(self.engine, expire_on_commit=False) as session:
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

    def settle(
        self,
        outcomes: Sequence[tuple[Attempt, Status | None, Any]],
        claim: ClaimRequest | None = None,
    ) -> tuple[set[uuid.UUID], list[Job]]:
        """In one transaction: store results, hand back unstarted jobs, claim new ones.

        Args:
            outcomes: Ended attempts: COMPLETED or FAILED with their result, or None
                for a job that was never started (handed back as NOT_FINISHED).
            claim: What to claim next, straight into RUNNING; None to claim nothing.

        Returns:
            The ids whose result was written (an attempt that no longer holds its task
            is skipped), and the jobs claimed.

        """
        results = [
            {
                **queue_sql.attempt_params(attempt),
                "new_status": status,
                "new_result": value,
                "new_progress": 1.0 if status == Status.COMPLETED else None,
            }
            for attempt, status, value in outcomes
            if status is not None
        ]
        unstarted = [
            queue_sql.attempt_params(attempt) for attempt, status, _ in outcomes if status is None
        ]
        if not (results or unstarted or claim):
            return set(), []
        jobs: list[Job] = []
        # One statement each, executed over all rows (one round trip with psycopg's
        # pipeline); only when the fence dropped some rows do we ask which.
        with self._writing(f"settling {len(outcomes)} task(s) and claiming") as db:
            finished = [attempt for attempt, status, _ in outcomes if status is not None]
            written = {attempt.task_id for attempt in finished}
            if results and db.execute(queue_sql.finish_many(), results).rowcount != len(results):
                written = self._still_held(db, finished, FINISHED)
            if unstarted:
                db.execute(queue_sql.release_many(), unstarted)
            if claim is not None:
                jobs = self._claim(db, claim)
        return written, jobs

    @staticmethod
    def _still_held(
        db: Connection, attempts: Sequence[Attempt], statuses: Sequence[Status]
    ) -> set[uuid.UUID]:
        rows = db.execute(queue_sql.attempts_state(attempts))
        return {task_id for task_id, status in rows if Status(status) in statuses}

    @staticmethod
    def _claim(db: Connection, request: ClaimRequest) -> list[Job]:
        candidates = queue_sql.claim_candidates(
            request.limit,
            request.max_retries,
            request.retryable_exceptions,
            request.maximum_active_tasks_per_user,
        )
        if request.maximum_active_tasks_per_user is not None:
            serialize_claims(db)
        statement = queue_sql.claim_jobs(
            candidates, request.max_retries, request.retryable_exceptions
        )
        return [
            Job(Attempt(task_id, number, assigned_at), endpoint, data, user_id)
            for task_id, number, assigned_at, endpoint, data, user_id in db.execute(statement)
        ]

    def start(self, jobs: Sequence[Job]) -> list[Job]:
        """Mark jobs claimed by ``claim`` RUNNING; returns those whose claim still held."""
        if not jobs:
            return []
        params = [queue_sql.attempt_params(job.attempt) for job in jobs]
        with self._writing("starting tasks") as db:
            if db.execute(queue_sql.start_many(), params).rowcount == len(params):
                return list(jobs)
            running = self._still_held(db, [job.attempt for job in jobs], (Status.RUNNING,))
        return [job for job in jobs if job.id in running]

    def finish(self, outcomes: Sequence[tuple[Attempt, Status, Any]]) -> set[uuid.UUID]:
        """Store results of running attempts; returns the ids whose result was written."""
        return self.settle(outcomes)[0]

    def report_progress(self, attempt: Attempt, progress: float) -> bool:
        """Record progress; False if the attempt no longer holds its task."""
        with self._writing("reporting progress") as connection:
            return connection.execute(queue_sql.report_progress(attempt, progress)).rowcount > 0

    def heartbeat(self, attempts: Sequence[Attempt]) -> None:
        """Keep these attempts' tasks from expiring."""
        if attempts:
            with self._writing("sending heartbeats") as connection:
                params = [queue_sql.attempt_params(attempt) for attempt in attempts]
                connection.execute(queue_sql.heartbeat_many(), params)

    def release(self, attempts: Sequence[Attempt]) -> set[uuid.UUID]:
        """Hand unfinished attempts back to the queue (NOT_FINISHED); returns their ids."""
        if not attempts:
            return set()
        params = [queue_sql.attempt_params(attempt) for attempt in attempts]
        with self._writing("handing back tasks") as db:
            if db.execute(queue_sql.release_many(), params).rowcount == len(params):
                return {attempt.task_id for attempt in attempts}
            return self._still_held(db, attempts, (Status.NOT_FINISHED,))

    def sweep(
        self, execution_timeout: float, heartbeat_timeout: float, max_retries: int
    ) -> list[TaskEntity]:
        """Hand back or fail tasks whose worker went silent or ran too long."""
        with Session(self.engine, expire_on_commit=False) as session:
            return TaskRepository(session).update_expired_tasks(
                execution_timeout, heartbeat_timeout, max_retries
            )
