"""Repository of the task queue's tasks."""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Executable, Update, func, select
from sqlalchemy.orm import Session

from aana.exceptions.db import (
    NotFoundException,
    TaskAlreadyFinishedException,
)
from aana.storage import checks, queue_sql
from aana.storage.dialects import counts_need_folding, minute_of, utcnow
from aana.storage.models.task import Status, TaskEntity
from aana.storage.models.task_count import TaskCountEntity
from aana.storage.repository.base import BaseRepository


def parse_task_id(task_id: str | uuid.UUID) -> uuid.UUID | None:
    """The task id as a UUID, or None if it is not one."""
    if isinstance(task_id, uuid.UUID):
        return task_id
    try:
        return uuid.UUID(str(task_id))
    except ValueError:
        return None


def status_totals(by_endpoint: Mapping[str, Mapping[str, int]]) -> dict[str, int]:
    """Tasks per status value (every status, 0 for none) plus ``"total"``.

    Args:
        by_endpoint: ``{endpoint: {status value: count}}``, as ``count_by_endpoint()``.

    """
    counts = dict.fromkeys((status.value for status in Status), 0)
    for numbers in by_endpoint.values():
        for status, number in numbers.items():
            counts[status] += number
    counts["total"] = sum(counts.values())
    return counts


_REFRESH = {"populate_existing": True}
"""Options for statements returning tasks: the rows returned refresh the loaded tasks."""


def _as_tasks(statement: Update) -> Executable:
    """``statement`` (``queue_sql``'s, returning task rows) returning ``TaskEntity`` objects."""
    return select(TaskEntity).from_statement(statement)


class TaskRepository(BaseRepository[TaskEntity]):
    """Tasks of the queue: defer, claim, report, expire, inspect."""

    def __init__(self, session: Session) -> None:
        """Bind the repository to a session."""
        super().__init__(session, TaskEntity)

    @contextmanager
    def _write_transaction(self, action: str) -> Iterator[None]:
        """A write (see ``writing``) that commits when the block ends."""
        with self.writing(action):
            yield
            self._end_transaction()

    def save(
        self, endpoint: str, data: Any, user_id: str | None = None, priority: int = 0
    ) -> TaskEntity:
        """Defer a task: store it as CREATED.

        Raises:
            TypeError: ``data`` cannot be stored as JSON; nothing is written.

        """
        checks.json_text(data, "task data")
        task = TaskEntity(endpoint=endpoint, data=data, user_id=user_id, priority=priority)
        return self.create(task)

    def read(self, task_id: str | uuid.UUID, check: bool = True) -> TaskEntity:
        """The task with this id; a malformed id is treated as unknown.

        Raises:
            NotFoundException: No such task (or a malformed id) and ``check`` is true.

        """
        parsed = parse_task_id(task_id)
        if parsed is None:
            if check:
                raise NotFoundException(self.table_name, task_id)
            return None  # type: ignore[return-value]
        return super().read(parsed, check=check)

    def delete(self, task_id: str | uuid.UUID, check: bool = False) -> TaskEntity | None:
        """Delete a task; a malformed or unknown id returns None unless ``check``."""
        parsed = parse_task_id(task_id)
        if parsed is None:
            if check:
                raise NotFoundException(self.table_name, task_id)
            return None
        return super().delete(parsed, check=check)

    def exists(self, item_id: Any) -> bool:
        """Whether a task with this id exists; a malformed id never does."""
        parsed = parse_task_id(item_id)
        return parsed is not None and super().exists(parsed)

    def fetch_unprocessed_tasks(
        self,
        limit: int | None = None,
        max_retries: int = 1,
        retryable_exceptions: Sequence[str] | None = None,
        maximum_active_tasks_per_user: int | None = None,
    ) -> list[TaskEntity]:
        """Claim tasks to run: mark them ASSIGNED in one statement and return them.

        Claims CREATED and NOT_FINISHED tasks, and FAILED ones whose error is in
        ``retryable_exceptions`` and that were tried fewer than ``max_retries`` times;
        once due (``scheduled_at`` by the database clock), highest priority first,
        then due first (oldest first, for tasks not scheduled). Concurrent callers,
        threads or processes, never claim the same task.

        Args:
            limit: At most this many tasks (>= 0); None for all.
            max_retries: Attempts after which a failed task is not retried.
            retryable_exceptions: Names of exception classes worth a retry.
            maximum_active_tasks_per_user: A user with this many tasks assigned or
                running gets no more claimed until some finish; None or 0: no limit.

        Raises:
            ValueError: ``limit`` is negative; nothing is claimed.

        """
        checks.check_page(limit)
        request = queue_sql.ClaimRequest(
            limit, max_retries, retryable_exceptions, maximum_active_tasks_per_user
        )
        tasks = self._write_tasks("claiming tasks", queue_sql.claim(request), request.parameters())
        tasks.sort(key=lambda task: (-task.priority, task.scheduled_at))
        return tasks

    def update_status(
        self,
        task_id: str | uuid.UUID,
        status: Status,
        progress: float | None = None,
        result: Any = None,
        commit: bool = True,
    ) -> TaskEntity:
        """Set a task's status (and progress and result, when given).

        COMPLETED and FAILED stamp ``completed_at``; ASSIGNED stamps ``assigned_at`` and
        counts a retry.

        Raises:
            NotFoundException: No such task.
            TypeError: ``result`` cannot be stored as JSON; nothing is written.

        """
        parsed = parse_task_id(task_id)
        if parsed is None:
            raise NotFoundException(self.table_name, task_id)
        has_result = result is not None
        if has_result:
            checks.json_text(result, "task result")
        statement, params = queue_sql.set_status(
            parsed, Status(status), progress, result, has_result
        )
        tasks = self._write_tasks(f"updating task {parsed}", statement, params, commit=commit)
        if not tasks:
            raise NotFoundException(self.table_name, task_id)
        return tasks[0]

    def _write_tasks(
        self, action: str, statement: Update, params: dict[str, Any], commit: bool = True
    ) -> list[TaskEntity]:
        """Run an UPDATE returning tasks; the tasks loaded in the session are refreshed.

        The queue's hot path: with nothing unsaved in the session, the statement runs
        alone in autocommit (one round trip; one statement is atomic by itself).

        Args:
            action: What is being done, for error messages.
            statement: The UPDATE (``queue_sql``'s), returning the task rows.
            params: Its parameters.
            commit: Commit when done; otherwise it runs in the session's transaction.

        """
        if commit:
            with self.writing_one_statement(action):
                return list(
                    self.session.scalars(_as_tasks(statement), params, execution_options=_REFRESH)
                )
        with self.writing(action):
            return list(
                self.session.scalars(_as_tasks(statement), params, execution_options=_REFRESH)
            )

    def retry_task(self, task_id: str | uuid.UUID) -> TaskEntity:
        """Send a task back to the queue as CREATED, with its retries and result cleared.

        Raises:
            NotFoundException: No such task.
            ValueError: The task is assigned or running: retrying it would run it twice.

        """
        parsed = parse_task_id(task_id)
        with self.writing(f"retrying task {task_id}"):
            current = None if parsed is None else self._get(parsed, fresh=True)
            if current is None:
                raise NotFoundException(self.table_name, task_id)
            if current.status in queue_sql.ACTIVE:
                raise ValueError(
                    f"task {task_id} is {current.status.value}: only a task that is not "
                    "assigned or running can be retried"
                )
            statement = queue_sql.retry(current.id)
            task: TaskEntity | None = self.session.scalars(
                _as_tasks(statement), execution_options=_REFRESH
            ).one_or_none()
            if task is None:  # it was claimed meanwhile
                raise ValueError(f"task {task_id} was claimed meanwhile; it was not retried")
            self._end_transaction()
        return task

    def cancel(self, task_id: str | uuid.UUID) -> TaskEntity:
        """Cancel a task: at once if it waits in the queue, at its end if it runs.

        A task not yet started becomes CANCELLED and is never claimed. A task assigned
        or running gets a cancel request: its handler sees it (``should_abort()``,
        ``report_progress`` returning False) and the worker stores CANCELLED when the
        handler ends.

        Raises:
            NotFoundException: No such task (or a malformed id).
            TaskAlreadyFinishedException: The task is completed, failed or cancelled
                already; nothing is changed.

        """
        parsed = parse_task_id(task_id)
        if parsed is None:
            raise NotFoundException(self.table_name, task_id)
        tasks = self._write_tasks(f"cancelling task {parsed}", queue_sql.cancel(parsed), {})
        if tasks:
            return tasks[0]
        current = self.read(parsed, check=True)
        raise TaskAlreadyFinishedException(self.table_name, task_id, Status(current.status).value)

    def get_active_tasks(self) -> list[TaskEntity]:
        """Tasks ASSIGNED or RUNNING."""
        query = select(TaskEntity).where(TaskEntity.status.in_(queue_sql.ACTIVE))
        with self.reading("listing active tasks"):
            return list(self.session.scalars(query, execution_options=_REFRESH))

    def filter_incomplete_tasks(self, task_ids: Sequence[str | uuid.UUID]) -> list[str]:
        """Those of ``task_ids`` still CREATED, ASSIGNED or RUNNING, as the original SDK.

        NOT_FINISHED tasks (handed back, waiting to be claimed again) are left out, like
        finished ones.
        """
        parsed = [task for task in map(parse_task_id, task_ids) if task is not None]
        if not parsed:
            return []
        query = select(TaskEntity.id).where(
            TaskEntity.id.in_(parsed),
            TaskEntity.status.in_((Status.CREATED, Status.ASSIGNED, Status.RUNNING)),
        )
        with self.reading("filtering incomplete tasks"):
            return [str(task_id) for task_id in self.session.scalars(query)]

    def update_expired_tasks(
        self,
        execution_timeout: float,
        heartbeat_timeout: float,
        max_retries: int,
        retry_policy: queue_sql.Backoff | None = None,
        endpoint_policies: Mapping[str, queue_sql.Backoff] | None = None,
    ) -> list[TaskEntity]:
        """Hand back tasks whose worker took too long or went silent.

        A task ASSIGNED or RUNNING for longer than ``execution_timeout`` seconds, or
        without a heartbeat for ``heartbeat_timeout`` seconds, goes back to the queue as
        NOT_FINISHED if it has retries left, and is otherwise FAILED with the error
        ``TimeoutError`` or ``HeartbeatTimeoutError``. With a ``retry_policy``
        (``aana.tasks.options.RetryPolicy``; per endpoint in ``endpoint_policies``) a
        task handed back is due after its back-off, by the database clock; without one,
        at once. A task whose cancellation was requested ends CANCELLED.

        Returns:
            The tasks changed.

        """
        statement, params = queue_sql.expire(
            execution_timeout, heartbeat_timeout, max_retries, retry_policy, endpoint_policies
        )
        return self._write_tasks("expiring tasks", statement, params)

    def heartbeat(self, task_ids: Sequence[str | uuid.UUID]) -> None:
        """Record that these tasks are still being worked on."""
        parsed = [task for task in map(parse_task_id, task_ids) if task is not None]
        if not parsed:
            return
        with self.writing_one_statement("sending heartbeats"):
            self.session.execute(queue_sql.heartbeat(parsed))

    def get_tasks(
        self,
        user_id: str | None = None,
        status: Status | None = None,
        limit: int | None = 100,
        offset: int = 0,
        endpoint: str | None = None,
    ) -> list[TaskEntity]:
        """Tasks, newest first, optionally of one user, one status and one endpoint.

        Raises:
            ValueError: ``limit`` or ``offset`` is negative; nothing is read.

        """
        checks.check_page(limit, offset)
        query = select(TaskEntity)
        if endpoint is not None:
            query = query.where(TaskEntity.endpoint == endpoint)
        if user_id is not None:
            query = query.where(TaskEntity.user_id == user_id)
        if status is not None:
            query = query.where(TaskEntity.status == Status(status))
        query = query.order_by(TaskEntity.created_at.desc(), TaskEntity.id)
        query = query.limit(limit).offset(offset)
        with self.reading("listing tasks"):
            return list(self.session.scalars(query, execution_options=_REFRESH))

    def count_matching(
        self,
        user_id: str | None = None,
        status: Status | None = None,
        endpoint: str | None = None,
    ) -> int:
        """How many tasks ``get_tasks`` would list with these filters and no limit.

        Without ``user_id``, read from the counts the database keeps (``task_counts``):
        a few rows, however many tasks there are.
        """
        if user_id is None:
            wanted = None if status is None else Status(status).value
            return sum(
                number
                for at, numbers in self.count_by_endpoint().items()
                if endpoint is None or at == endpoint
                for state, number in numbers.items()
                if wanted is None or state == wanted
            )
        query = select(func.count()).select_from(TaskEntity).where(TaskEntity.user_id == user_id)
        if endpoint is not None:
            query = query.where(TaskEntity.endpoint == endpoint)
        if status is not None:
            query = query.where(TaskEntity.status == Status(status))
        with self.reading("counting tasks"):
            return int(self.session.scalar(query) or 0)

    def count_by_endpoint(self) -> dict[str, dict[str, int]]:
        """Tasks per endpoint and status value (statuses without tasks left out).

        Read from ``task_counts``, which triggers on ``tasks`` keep exact in every
        transaction (see ``aana.storage.models.task_count``).
        """
        counts: dict[str, dict[str, int]] = {}
        with self.reading("counting tasks per endpoint"):
            for endpoint, status, number in self.session.execute(queue_sql.counts()):
                counts.setdefault(endpoint, {})[Status(status).value] = int(number)
        return counts

    def compact_counts(self) -> None:
        """Fold the rows of ``task_counts`` into one per endpoint and status.

        On PostgreSQL every statement that changes tasks adds rows there (see
        ``aana.storage.models.task_count``); workers run this with their heartbeats and
        the dashboard before it counts, so counting stays a read of a few rows. Run it
        now and then if neither runs. One statement, which never waits for another
        compaction and writes nothing when there is nothing to fold; nothing to do on
        SQLite. Like any write of the repository, it commits the session's transaction.
        """
        if not counts_need_folding(self.session.get_bind(TaskCountEntity).dialect):
            return
        with self.writing_one_statement("compacting task counts"):
            self.session.execute(queue_sql.compact_counts())

    def finished_per_minute(self, seconds: float) -> list[tuple[str, str, int]]:
        """Tasks COMPLETED or FAILED in the last ``seconds`` (database clock), per minute.

        Returns:
            ``(minute, status value, count)`` rows, oldest minute first; the minute is
            UTC text, ``YYYY-MM-DD HH:MM``.

        """
        minute = minute_of(TaskEntity.completed_at)
        query = (
            select(minute, TaskEntity.status, func.count())
            .where(
                TaskEntity.status.in_((Status.COMPLETED, Status.FAILED)),
                TaskEntity.completed_at >= utcnow(-float(seconds)),
            )
            .group_by(minute, TaskEntity.status)
            .order_by(minute)
        )
        with self.reading("counting finished tasks per minute"):
            return [
                (str(at), Status(status).value, int(number))
                for at, status, number in self.session.execute(query)
            ]

    def latest_ended(self, status: Status, limit: int = 20) -> list[TaskEntity]:
        """The tasks of a finished ``status`` that ended last, newest first.

        Raises:
            ValueError: ``limit`` is negative; nothing is read.

        """
        checks.check_page(limit)
        query = (
            select(TaskEntity)
            .where(TaskEntity.status == Status(status))
            .order_by(TaskEntity.completed_at.desc(), TaskEntity.id)
            .limit(limit)
        )
        with self.reading("listing ended tasks"):
            return list(self.session.scalars(query, execution_options=_REFRESH))

    def count(self, user_id: str | None = None) -> dict[str, int]:
        """Tasks per status value, plus ``"total"``, optionally of one user."""
        if user_id is None:
            return status_totals(self.count_by_endpoint())
        query = (
            select(TaskEntity.status, func.count())
            .where(TaskEntity.user_id == user_id)
            .group_by(TaskEntity.status)
        )
        with self.reading("counting tasks"):
            mine = {Status(status).value: number for status, number in self.session.execute(query)}
        return status_totals({user_id: mine})

    def purge(self, older_than: float) -> int:
        """Delete COMPLETED, FAILED and CANCELLED tasks that ended ``older_than`` seconds ago.

        Returns:
            How many tasks were deleted.

        """
        with self._write_transaction("purging finished tasks"):
            deleted = self.session.execute(queue_sql.purge(older_than))
            return int(getattr(deleted, "rowcount", 0))
