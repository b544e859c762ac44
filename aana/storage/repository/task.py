"""Repository of the task queue's tasks."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import cache
from typing import Any

from sqlalchemy import Engine, Update, func, select
from sqlalchemy.orm import Session

from aana.exceptions.db import InvalidJsonException, NotFoundException
from aana.storage import checks, driver, queue_sql
from aana.storage.dialects import claim_lock
from aana.storage.errors import translate_errors
from aana.storage.loading import load_entities
from aana.storage.models.task import Status, TaskEntity
from aana.storage.repository.base import BaseRepository


def parse_task_id(task_id: str | uuid.UUID) -> uuid.UUID | None:
    """The task id as a UUID, or None if it is not one."""
    if isinstance(task_id, uuid.UUID):
        return task_id
    try:
        return uuid.UUID(str(task_id))
    except ValueError:
        return None


_JSON = json.JSONEncoder(allow_nan=False)  # one encoder: json.dumps(...) builds one per call


def check_json(value: Any, what: str) -> str:
    """``value`` as JSON text, or a ``TypeError`` if it cannot be stored as JSON.

    Raises:
        InvalidJsonException: ``value`` holds something JSON cannot (an object, NaN,
            infinity), text no backend can store (a lone surrogate, NUL), or is nested
            deeper than ``aana.storage.checks.MAX_JSON_DEPTH``. A ``TypeError`` (and a
            ``ValueError``); never a ``RecursionError``.

    """
    checks.check_json(value, what)  # first: it walks without recursion
    try:
        return _JSON.encode(value)
    except (TypeError, ValueError) as error:
        raise InvalidJsonException(
            f"{what} must be JSON-serialisable (dicts, lists, strings, numbers, booleans, "
            f"None; no NaN or infinity): {error}. Convert other values, e.g. str(path).",
            what,
        ) from None


@cache
def _returned_keys(statement: Update) -> tuple[str, ...]:
    """Attribute names of the task columns ``statement`` returns (named as the columns)."""
    return tuple(str(column.key) for column in statement.exported_columns)


_REFRESH = {"synchronize_session": False, "populate_existing": True}
"""Options for statements returning tasks: the rows returned refresh the loaded tasks."""


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
            self.session.commit()

    def save(
        self, endpoint: str, data: Any, user_id: str | None = None, priority: int = 0
    ) -> TaskEntity:
        """Defer a task: store it as CREATED.

        Raises:
            TypeError: ``data`` cannot be stored as JSON; nothing is written.

        """
        check_json(data, "task data")
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
        highest priority first, then oldest. Concurrent callers, threads or processes,
        never claim the same task.

        Args:
            limit: At most this many tasks (>= 0); None for all.
            max_retries: Attempts after which a failed task is not retried.
            retryable_exceptions: Names of exception classes worth a retry.
            maximum_active_tasks_per_user: A user with this many tasks assigned or
                running gets no more claimed until some finish.

        Raises:
            ValueError: ``limit`` is negative; nothing is claimed.

        """
        checks.check_page(limit)
        request = queue_sql.ClaimRequest(
            limit, max_retries, retryable_exceptions, maximum_active_tasks_per_user
        )
        tasks = self._write_tasks(
            "claiming tasks", queue_sql.claim(request), request.parameters(), fair=request.fair
        )
        tasks.sort(key=lambda task: (-task.priority, task.created_at))
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
            check_json(result, "task result")
        statement, params = queue_sql.set_status(
            parsed, Status(status), progress, result, has_result
        )
        tasks = self._write_tasks(f"updating task {parsed}", statement, params, commit=commit)
        if not tasks:
            raise NotFoundException(self.table_name, task_id)
        return tasks[0]

    def _write_tasks(
        self,
        action: str,
        statement: Update,
        params: dict[str, Any],
        fair: bool = False,
        commit: bool = True,
    ) -> list[TaskEntity]:
        """Run a statement returning task columns and load the tasks it returns.

        The queue's hot path. When the session is bound to an engine and holds no
        unsaved changes, the statement runs alone on a driver connection, committed by
        itself, without the session's transaction and the ORM's per-statement work
        (``aana.storage.driver``); a read transaction the session has open is ended
        first, as ``writing`` does. Otherwise it runs in the session's transaction.

        Args:
            action: What is being done, for error messages.
            statement: The UPDATE, returning ``TASK_COLUMNS``.
            params: Its parameters.
            fair: Take the claimers' turn first (``claim_lock``).
            commit: Commit when done (only then may the driver path be taken).

        """
        bind = self.session.get_bind(TaskEntity)
        if (
            commit
            and isinstance(bind, Engine)
            and not bind.dialect.is_async  # an AsyncSession's run_sync: its own driver
            and not self._has_pending_changes()
        ):
            lock = claim_lock(bind.dialect) if fair else None
            with translate_errors(action):
                if self.session.in_transaction():
                    try:
                        self._end_transaction()
                    except BaseException:
                        self.session.rollback()
                        raise
                if lock is None:
                    rows = driver.execute_once(bind, statement, params)
                else:
                    with driver.transaction(bind) as db:
                        db.execute(lock)
                        rows = db.execute(statement, params)
        else:
            with self.writing(action):
                self.session.flush()
                connection = self.session.connection()
                if fair and (lock := claim_lock(connection.dialect)) is not None:
                    connection.execute(lock)
                rows = [tuple(row) for row in connection.execute(statement, params)]
                if commit:
                    self.session.commit()
        return load_entities(self.session, TaskEntity.__mapper__, _returned_keys(statement), rows)

    def retry_task(self, task_id: str | uuid.UUID) -> TaskEntity:
        """Send a task back to the queue as CREATED, with its retries and result cleared.

        Raises:
            NotFoundException: No such task.
            ValueError: The task is assigned or running: retrying it would run it twice.

        """
        with self.writing(f"retrying task {task_id}"):
            current = self.read(task_id)
            if current.status in queue_sql.ACTIVE:
                raise ValueError(
                    f"task {task_id} is {current.status.value}: only a task that is not "
                    "assigned or running can be retried"
                )
            statement = queue_sql.retry(current.id)
            task: TaskEntity | None = self.session.scalars(
                statement, execution_options=_REFRESH
            ).one_or_none()
            if task is None:  # it was claimed meanwhile
                raise ValueError(f"task {task_id} was claimed meanwhile; it was not retried")
            self.session.commit()
        return task

    def get_active_tasks(self) -> list[TaskEntity]:
        """Tasks ASSIGNED or RUNNING."""
        query = select(TaskEntity).where(TaskEntity.status.in_(queue_sql.ACTIVE))
        with self.reading("listing active tasks"):
            return list(self.session.scalars(query, execution_options=_REFRESH))

    def filter_incomplete_tasks(self, task_ids: Sequence[str | uuid.UUID]) -> list[str]:
        """Those of ``task_ids`` that exist and are neither COMPLETED nor FAILED."""
        parsed = [task for task in map(parse_task_id, task_ids) if task is not None]
        if not parsed:
            return []
        query = select(TaskEntity.id).where(
            TaskEntity.id.in_(parsed), TaskEntity.status.not_in(queue_sql.FINISHED)
        )
        with self.reading("filtering incomplete tasks"):
            return [str(task_id) for task_id in self.session.scalars(query)]

    def update_expired_tasks(
        self, execution_timeout: float, heartbeat_timeout: float, max_retries: int
    ) -> list[TaskEntity]:
        """Hand back tasks whose worker took too long or went silent.

        A task ASSIGNED or RUNNING for longer than ``execution_timeout`` seconds, or
        without a heartbeat for ``heartbeat_timeout`` seconds, goes back to the queue as
        NOT_FINISHED if it has retries left, and is otherwise FAILED with the error
        ``TimeoutError`` or ``HeartbeatTimeoutError``.

        Returns:
            The tasks changed.

        """
        changed: list[TaskEntity] = []
        with self._write_transaction("expiring tasks"):
            rows = self.session.execute(queue_sql.expired(execution_timeout, heartbeat_timeout))
            for task_id, too_long, num_retries in rows.all():
                if num_retries < max_retries:
                    status, result = Status.NOT_FINISHED, None
                elif too_long:
                    status, result = (
                        Status.FAILED,
                        {
                            "error": "TimeoutError",
                            "message": f"Task ran longer than {execution_timeout} seconds.",
                        },
                    )
                else:
                    status, result = (
                        Status.FAILED,
                        {
                            "error": "HeartbeatTimeoutError",
                            "message": f"No heartbeat for {heartbeat_timeout} seconds.",
                        },
                    )
                statement = queue_sql.hand_back(task_id, status, result)
                changed.extend(self.session.scalars(statement, execution_options=_REFRESH))
        return changed

    def heartbeat(self, task_ids: Sequence[str | uuid.UUID]) -> None:
        """Record that these tasks are still being worked on."""
        parsed = [task for task in map(parse_task_id, task_ids) if task is not None]
        if not parsed:
            return
        with self.writing("sending heartbeats"):
            self.session.execute(queue_sql.heartbeat(parsed))
            self.session.commit()

    def get_tasks(
        self,
        user_id: str | None = None,
        status: Status | None = None,
        limit: int = 100,
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

    def count(self, user_id: str | None = None) -> dict[str, int]:
        """Tasks per status value, plus ``"total"``, optionally of one user."""
        query = select(TaskEntity.status, func.count()).group_by(TaskEntity.status)
        if user_id is not None:
            query = query.where(TaskEntity.user_id == user_id)
        counts = {status.value: 0 for status in Status}
        with self.reading("counting tasks"):
            for status, number in self.session.execute(query):
                counts[Status(status).value] = number
        counts["total"] = sum(counts.values())
        return counts

    def purge(self, older_than: float) -> int:
        """Delete COMPLETED and FAILED tasks that ended more than ``older_than`` seconds ago.

        Returns:
            How many tasks were deleted.

        """
        with self._write_transaction("purging finished tasks"):
            deleted = self.session.execute(queue_sql.purge(older_than))
            return int(getattr(deleted, "rowcount", 0))
