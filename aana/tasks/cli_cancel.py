"""``aana tasks cancel``: cancel tasks by id, or every unfinished task of a selection."""

from __future__ import annotations

import uuid
from typing import Any

import click
from sqlalchemy import select
from sqlalchemy.orm import Session

from aana.exceptions.db import NotFoundException, TaskAlreadyFinishedException
from aana.storage.dialects import utcnow
from aana.storage.models.task import Status, TaskEntity
from aana.storage.queue_sql import CLAIMABLE, UNFINISHED
from aana.storage.repository.task import TaskRepository

_UNFINISHED_STATUSES = click.Choice([status.value for status in UNFINISHED])


def _session() -> Session:
    from aana.configs.settings import settings

    return Session(settings.db_config.get_engine(), expire_on_commit=False)


def timing(session: Session, task: TaskEntity) -> dict[str, Any]:
    """When the task is due, and when its next attempt is, for ``aana tasks show``."""
    due = task.scheduled_at
    row: dict[str, Any] = {
        "scheduled_at": due.isoformat() if due else None,
        "cancel_requested": task.cancel_requested,
        "dedupe_key": task.dedupe_key,
        "period_key": task.period_key,
    }
    now = session.scalar(select(utcnow()))
    waiting = Status(task.status) in (*CLAIMABLE, Status.FAILED)
    if due is not None and now is not None and waiting and due > now and task.num_retries:
        seconds = (due - now).total_seconds()
        row["next_attempt_due"] = f"{due.isoformat()} (in {seconds:.1f} s)"
    return row


def select_unfinished(
    session: Session, status: str | None, endpoint: str | None, user_id: str | None
) -> list[uuid.UUID]:
    """Ids of the unfinished tasks matching every filter given (oldest first)."""
    query = select(TaskEntity.id).where(TaskEntity.status.in_(UNFINISHED))
    if status is not None:
        query = query.where(TaskEntity.status == Status(status))
    if endpoint is not None:
        query = query.where(TaskEntity.endpoint == endpoint)
    if user_id is not None:
        query = query.where(TaskEntity.user_id == user_id)
    with session.begin():
        return list(session.scalars(query.order_by(TaskEntity.created_at, TaskEntity.id)))


@click.command()
@click.argument("task_ids", nargs=-1)
@click.option(
    "--status", type=_UNFINISHED_STATUSES, default=None, help="Only tasks in this status."
)
@click.option("--endpoint", default=None, help="Only tasks of this endpoint.")
@click.option("--user", "user_id", default=None, help="Only this user's tasks.")
def cancel(
    task_ids: tuple[str, ...], status: str | None, endpoint: str | None, user_id: str | None
) -> None:
    """Cancel tasks: the TASK_IDS given, or every unfinished task of a selection.

    A task waiting in the queue is cancelled at once; a running one is asked to stop
    and ends CANCELLED when its handler returns. Exits 1 if a TASK_ID is unknown or
    already finished (the others are still cancelled).
    """
    selection = status is not None or endpoint is not None or user_id is not None
    if task_ids and selection:
        raise click.UsageError("give TASK_IDS or --status/--endpoint/--user, not both")
    if not task_ids and not selection:
        raise click.UsageError(
            "name the tasks: TASK_IDS, or a selection with --status, --endpoint or --user"
        )
    cancelled = requested = 0
    refused: list[str] = []
    with _session() as session:
        repository = TaskRepository(session)
        targets: list[str | uuid.UUID] = list(task_ids)
        if selection:
            targets = list(select_unfinished(session, status, endpoint, user_id))
        for task_id in targets:
            try:
                task = repository.cancel(task_id)
            except NotFoundException:
                refused.append(f"no task with id {task_id!s}")
                continue
            except TaskAlreadyFinishedException as error:
                if selection:  # it finished since it was selected: nothing to do
                    continue
                refused.append(f"task {task_id!s} is already {error.status}; not cancelled")
                continue
            if Status(task.status) == Status.CANCELLED:
                cancelled += 1
            else:
                requested += 1
    click.echo(
        f"cancelled {cancelled} task(s); asked {requested} running task(s) to stop "
        "(they end cancelled when their handler returns)"
    )
    for reason in refused:
        click.echo(f"error: {reason}", err=True)
    if refused:
        raise SystemExit(1)
