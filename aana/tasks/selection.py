"""Which tasks an operator command acts on, and the bulk operations of ``aana tasks``.

A ``TaskSelection`` is either task ids or filters (statuses, endpoint, user): commands
that act on many tasks (``retry``; ``cancel`` later) take the same options and build
one with ``selection_options``. Every operation is one guarded statement (or, for
purging, one per chunk) on the database clock, like the queue's own.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import click
from sqlalchemy import ColumnElement, delete, func, select
from sqlalchemy.orm import Session

from aana.exceptions.core import BaseException as AanaException
from aana.storage import queue_sql
from aana.storage.errors import translate_errors
from aana.storage.models.task import Status, TaskEntity
from aana.storage.repository.task import parse_task_id

F = TypeVar("F", bound=Callable[..., Any])


class SelectionError(click.UsageError):
    """The options select no tasks, or select them in two ways at once (exit code 2)."""


class NotRetryableError(AanaException, ValueError):
    """Some of the tasks named by id cannot be retried; none was."""


@dataclass(frozen=True)
class TaskSelection:
    """Tasks chosen by id, or by status, endpoint and user (all given filters apply).

    Attributes:
        task_ids: The tasks, by id; when given, no filter may be.
        statuses: Only tasks in one of these statuses.
        endpoint: Only tasks of this endpoint.
        user_id: Only this user's tasks.

    """

    task_ids: tuple[uuid.UUID, ...] = ()
    statuses: tuple[Status, ...] = ()
    endpoint: str | None = None
    user_id: str | None = None

    @classmethod
    def from_options(
        cls,
        task_ids: Sequence[str],
        statuses: Sequence[str],
        endpoint: str | None,
        user_id: str | None,
    ) -> TaskSelection:
        """A selection from the command line's arguments and options.

        Raises:
            SelectionError: Nothing selected, ids and filters mixed, or an id that is
                not a task id.

        """
        filtered = bool(statuses or endpoint or user_id)
        if task_ids and filtered:
            raise SelectionError(
                "give task ids or filters (--status, --endpoint, --user), not both"
            )
        if not task_ids and not filtered:
            raise SelectionError(
                "select tasks: give their ids, or filters such as --status failed, "
                "--endpoint NAME, --user ID"
            )
        parsed = [parse_task_id(task_id) for task_id in task_ids]
        malformed = [raw for raw, task_id in zip(task_ids, parsed, strict=True) if task_id is None]
        if malformed:
            raise SelectionError(f"not task ids: {', '.join(map(repr, malformed))}")
        return cls(
            task_ids=tuple(task_id for task_id in parsed if task_id is not None),
            statuses=tuple(Status(status) for status in statuses),
            endpoint=endpoint,
            user_id=user_id,
        )

    def conditions(self) -> list[ColumnElement[bool]]:
        """The WHERE conditions on ``TaskEntity`` that select these tasks."""
        conditions: list[ColumnElement[bool]] = []
        if self.task_ids:
            conditions.append(TaskEntity.id.in_(self.task_ids))
        if self.statuses:
            conditions.append(TaskEntity.status.in_(self.statuses))
        if self.endpoint is not None:
            conditions.append(TaskEntity.endpoint == self.endpoint)
        if self.user_id is not None:
            conditions.append(TaskEntity.user_id == self.user_id)
        return conditions


def selection_options(
    statuses: Sequence[Status], default: Sequence[Status] = ()
) -> Callable[[F], F]:
    """The TASK_IDS argument and --status/--endpoint/--user options of a bulk command."""
    choice = click.Choice([status.value for status in statuses])

    def decorate(command: F) -> F:
        for option in reversed(
            [
                click.argument("task_ids", nargs=-1),
                click.option(
                    "--status",
                    "statuses",
                    type=choice,
                    multiple=True,
                    help="Tasks in this status (repeatable).",
                ),
                click.option("--endpoint", default=None, help="Tasks of this endpoint."),
                click.option("--user", "user_id", default=None, help="This user's tasks."),
            ]
        ):
            command = option(command)
        return command

    return decorate


def retry(session: Session, selection: TaskSelection) -> list[str]:
    """Send the selected FAILED tasks back to the queue as new; returns their ids.

    With ids, all of them must be FAILED, or none is retried.

    Raises:
        NotRetryableError: Some of the ids are not FAILED tasks; nothing was retried.

    """
    guard = [*selection.conditions(), TaskEntity.status == Status.FAILED]
    with translate_errors("retrying tasks"), session.begin():
        if selection.task_ids:
            query = select(TaskEntity.id, TaskEntity.status).where(*selection.conditions())
            found = {task_id: status for task_id, status in session.execute(query)}
            refused = [
                f"{task_id} is {Status(found[task_id]).value}"
                if task_id in found
                else f"{task_id} does not exist"
                for task_id in selection.task_ids
                if found.get(task_id) != Status.FAILED
            ]
            if refused:
                raise NotRetryableError(
                    f"only failed tasks are retried, and {'; '.join(refused)}; nothing was retried"
                )
        return [str(task.id) for task in session.execute(queue_sql.retry_where(*guard))]


def count_purgeable(session: Session, older_than: float) -> int:
    """How many finished tasks ended more than ``older_than`` seconds ago."""
    query = select(func.count()).select_from(TaskEntity).where(queue_sql.purgeable(older_than))
    with translate_errors("counting finished tasks"), session.begin():
        return int(session.scalar(query) or 0)


def purge_in_chunks(session: Session, older_than: float, chunk: int = 1000) -> Iterator[int]:
    """Delete finished tasks older than ``older_than`` seconds, ``chunk`` per transaction.

    Yields:
        How many tasks each chunk deleted, until one deletes none.

    """
    condition = queue_sql.purgeable(older_than)
    while True:
        chosen = select(TaskEntity.id).where(condition).limit(chunk).scalar_subquery()
        statement = delete(TaskEntity).where(TaskEntity.id.in_(chosen), condition)
        with translate_errors("purging finished tasks"), session.begin():
            deleted = int(getattr(session.execute(statement), "rowcount", 0))
        if not deleted:
            return
        yield deleted
