"""The queue manager: the worker's and the application's operations on the tasks table.

Each method is one short transaction of statements from ``aana.storage.queue_sql``,
run on the driver's connection (``aana.storage.driver``), not through ORM objects: a
worker writes tens of thousands of rows a minute and needs none of the unit of work's
bookkeeping.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from aana.storage import driver, queue_sql
from aana.storage.bulk import BulkInsert, Encoded, Same, Values
from aana.storage.dialects import claim_lock
from aana.storage.driver import DriverConnection
from aana.storage.errors import translate_errors
from aana.storage.models.task import Status, TaskEntity
from aana.storage.queue_sql import FINISHED, Attempt, ClaimRequest
from aana.storage.repository.task import TaskRepository, check_json

__all__ = ["Attempt", "ClaimRequest", "Job", "QueueManager", "check_json"]


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
    def _writing(self, action: str) -> Iterator[DriverConnection]:
        # One transaction; SQLite's takes the write lock up front (BEGIN IMMEDIATE).
        with translate_errors(action), driver.transaction(self.engine) as connection:
            yield connection

    def defer(
        self,
        endpoint: str,
        data_items: Sequence[Any],
        priority: int = 0,
        user_id: str | None = None,
    ) -> list[uuid.UUID]:
        """Store tasks as CREATED in one statement; idle workers are woken.

        On PostgreSQL every insert into the tasks table notifies the workers (a trigger
        of the migrations), so the notification costs no round trip here.

        Raises:
            TypeError: An item cannot be stored as JSON; nothing is written.

        """
        encoded = [
            check_json(data, "task data" if len(data_items) == 1 else f"task data [{index}]")
            for index, data in enumerate(data_items)
        ]
        ids = [uuid.uuid4() for _ in data_items]
        if len(ids) == 1:
            values: dict[str, Any] = {"id": ids[0], "endpoint": endpoint, "data": encoded[0]}
            values.update(priority=priority, user=user_id)
            with translate_errors("deferring a task"):
                driver.execute_once(self.engine, queue_sql.new_task(), values)
            return ids
        if not ids:
            return []
        columns: dict[str, Values] = {
            "id": ids,
            "endpoint": Same(endpoint),
            "data": Encoded(encoded),
            "priority": Same(priority),
            "user_id": Same(user_id),
        }
        with translate_errors(f"deferring {len(ids)} tasks"), self.engine.begin() as connection:
            self._bulk_tasks.insert(connection, columns, len(ids), clock=False)
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
            if results and db.execute_many(queue_sql.finish_many(), results) != len(results):
                written = self._still_held(db, finished, FINISHED)
            if unstarted:
                db.execute_many(queue_sql.release_many(), unstarted)
            if claim is not None:
                jobs = self._claim(db, claim)
        return written, jobs

    @staticmethod
    def _still_held(
        db: DriverConnection, attempts: Sequence[Attempt], statuses: Sequence[Status]
    ) -> set[uuid.UUID]:
        held: set[uuid.UUID] = set()
        for attempt in attempts:
            rows = db.execute(queue_sql.attempt_state(), queue_sql.attempt_params(attempt))
            held.update(task_id for task_id, status in rows if Status(status) in statuses)
        return held

    @staticmethod
    def _claim(db: DriverConnection, request: ClaimRequest) -> list[Job]:
        if request.fair and (lock := claim_lock(db.dialect)) is not None:
            db.execute(lock)
        rows = db.execute(queue_sql.claim(request, job=True), request.parameters())
        return [
            Job(Attempt(task_id, number, assigned_at), endpoint, data, user_id)
            for task_id, number, assigned_at, endpoint, data, user_id in rows
        ]

    def start(self, jobs: Sequence[Job]) -> list[Job]:
        """Mark jobs claimed by ``claim`` RUNNING; returns those whose claim still held."""
        if not jobs:
            return []
        params = [queue_sql.attempt_params(job.attempt) for job in jobs]
        with self._writing("starting tasks") as db:
            if db.execute_many(queue_sql.start_many(), params) == len(params):
                return list(jobs)
            running = self._still_held(db, [job.attempt for job in jobs], (Status.RUNNING,))
        return [job for job in jobs if job.id in running]

    def finish(self, outcomes: Sequence[tuple[Attempt, Status, Any]]) -> set[uuid.UUID]:
        """Store results of running attempts; returns the ids whose result was written."""
        return self.settle(outcomes)[0]

    def report_progress(self, attempt: Attempt, progress: float) -> bool:
        """Record progress; False if the attempt no longer holds its task."""
        params = {**queue_sql.attempt_params(attempt), "progress": progress}
        with translate_errors("reporting progress"):
            return bool(driver.execute_once(self.engine, queue_sql.report_progress(), params))

    def heartbeat(self, attempts: Sequence[Attempt]) -> None:
        """Keep these attempts' tasks from expiring."""
        if attempts:
            with self._writing("sending heartbeats") as db:
                params = [queue_sql.attempt_params(attempt) for attempt in attempts]
                db.execute_many(queue_sql.heartbeat_many(), params)

    def release(self, attempts: Sequence[Attempt]) -> set[uuid.UUID]:
        """Hand unfinished attempts back to the queue (NOT_FINISHED); returns their ids."""
        if not attempts:
            return set()
        params = [queue_sql.attempt_params(attempt) for attempt in attempts]
        with self._writing("handing back tasks") as db:
            if db.execute_many(queue_sql.release_many(), params) == len(params):
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
