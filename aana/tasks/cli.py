"""``aana worker`` and ``aana tasks``: run the queue's workers and inspect its tasks."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from sqlalchemy.orm import Session

from aana.exceptions.config import AppPathError
from aana.exceptions.db import NotFoundException
from aana.exceptions.migrations import MigrationException
from aana.storage.models.task import Status, TaskEntity

if TYPE_CHECKING:
    from aana.sdk import AanaSDK
from aana.storage.repository.task import TaskRepository


class AppPathUsageError(click.ClickException):
    """APP_PATH does not name an AanaSDK: a one-line error and exit code 2."""

    exit_code = 2


def load_app(app_path: str) -> AanaSDK:
    """The ``AanaSDK`` at ``app_path``, the current directory importable (as ``python -m``).

    Raises:
        AppPathUsageError: ``AanaSDK.from_path`` refused the path; its message says why.

    """
    from aana.sdk import AanaSDK

    if str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))
    try:
        return AanaSDK.from_path(app_path)
    except AppPathError as error:
        raise AppPathUsageError(str(error)) from error


@click.command()
@click.argument("app_path")
@click.option(
    "--processes",
    "-p",
    type=click.IntRange(min=1),
    default=None,
    help="Worker processes [default: task_queue.num_workers].",
)
@click.option(
    "--concurrency",
    "-c",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Tasks each process runs at once (handler threads).",
)
@click.option(
    "--heartbeat-timeout",
    type=float,
    default=None,
    help="Seconds without a heartbeat before a task is lost [task_queue].",
)
@click.option(
    "--execution-timeout", type=float, default=None, help="Seconds a task may run [task_queue]."
)
@click.option(
    "--max-retries",
    type=click.IntRange(min=0),
    default=None,
    help="Attempts before a task stays FAILED [task_queue].",
)
@click.option(
    "--max-active-per-user",
    type=click.IntRange(min=0),
    default=None,
    help="Active tasks per user; 0 for no limit [task_queue].",
)
@click.option(
    "--poll-interval",
    type=float,
    default=None,
    help="Longest idle wait between looks at the queue, in seconds [1].",
)
@click.option(
    "--shutdown-grace",
    type=float,
    default=None,
    help="Seconds running tasks get to finish on SIGTERM/SIGINT [30].",
)
@click.option("--burst", is_flag=True, help="Exit when the queue is empty.")
@click.option(
    "--no-listen",
    is_flag=True,
    help="Poll only: no PostgreSQL notifications, no watching SQLite for changes.",
)
def worker(
    app_path: str,
    processes: int | None,
    concurrency: int,
    heartbeat_timeout: float | None,
    execution_timeout: float | None,
    max_retries: int | None,
    max_active_per_user: int | None,
    poll_interval: float | None,
    shutdown_grace: float | None,
    burst: bool,
    no_listen: bool,
) -> None:
    """Run the task handlers of APP_PATH (module:attribute of an AanaSDK) until stopped.

    SIGTERM or Ctrl-C stops claiming and lets running tasks finish within the grace
    period; a second one hands them back to the queue at once.
    """
    from aana.tasks.supervisor import run_workers
    from aana.tasks.worker import WorkerOptions

    app = load_app(app_path)
    _require_migrated(app, app_path)
    queue_settings = app.settings.task_queue
    options = WorkerOptions.from_settings(
        queue_settings,
        concurrency=concurrency,
        heartbeat_timeout=heartbeat_timeout,
        execution_timeout=execution_timeout,
        max_retries=max_retries,
        poll_interval=poll_interval,
        shutdown_grace=shutdown_grace,
        burst=burst or None,
        listen=False if no_listen else None,
        maximum_active_tasks_per_user=max_active_per_user,
    )
    sys.exit(run_workers(app_path, processes or queue_settings.num_workers, options))


def _require_migrated(app: AanaSDK, app_path: str) -> None:
    """Refuse to run on a database that lacks some of the package's migrations.

    The queue relies on them: its tables, the claim-order index, the notification
    trigger. A worker on an older schema would fail, or run slowly without saying why.
    """
    from aana.storage import op

    try:
        missing = op.missing_package_revisions(app.settings, app.migrations)
    except MigrationException as error:
        raise click.ClickException(str(error)) from error
    if missing:
        raise click.ClickException(
            f"the database lacks aana's migrations {', '.join(reversed(missing))}; "
            f"apply them first: aana migrate {app_path}"
        )


def _session() -> Session:
    from aana.configs.settings import settings

    return Session(settings.db_config.get_engine(), expire_on_commit=False)


def _describe(task: TaskEntity) -> dict[str, Any]:
    return {
        "id": str(task.id),
        "endpoint": task.endpoint,
        "status": Status(task.status).value,
        "user_id": task.user_id,
        "priority": task.priority,
        "progress": task.progress,
        "num_retries": task.num_retries,
        "created_at": task.created_at.isoformat() if task.created_at else None,
        "assigned_at": task.assigned_at.isoformat() if task.assigned_at else None,
        "completed_at": task.completed_at.isoformat() if task.completed_at else None,
    }


_STATUSES = click.Choice([status.value for status in Status])
_AGE = re.compile(r"^(\d+(?:\.\d+)?)([smhdw]?)$")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_age(value: str) -> float:
    """``90``, ``90s``, ``15m``, ``12h``, ``7d``, ``2w`` in seconds."""
    match = _AGE.match(value.strip())
    if match is None:
        raise click.BadParameter(f"{value!r} is not an age such as 3600, 90s, 15m, 12h, 7d or 2w")
    return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]


@click.group()
def tasks() -> None:
    """Inspect and manage the task queue's tasks (database from DB_CONFIG)."""


@tasks.command("list")
@click.option("--status", type=_STATUSES, default=None, help="Only tasks in this status.")
@click.option("--user", "user_id", default=None, help="Only this user's tasks.")
@click.option("--endpoint", default=None, help="Only tasks of this endpoint.")
@click.option(
    "--limit",
    type=click.IntRange(min=0),
    default=50,
    show_default=True,
    help="At most this many tasks; 0 for all.",
)
@click.option("--offset", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def list_tasks(
    status: str | None,
    user_id: str | None,
    endpoint: str | None,
    limit: int,
    offset: int,
    as_json: bool,
) -> None:
    """List tasks, newest first."""
    with _session() as session:
        found = TaskRepository(session).get_tasks(
            user_id=user_id,
            status=Status(status) if status else None,
            limit=limit or None,
            offset=offset,
            endpoint=endpoint,
        )
    for task in found:
        row = _describe(task)
        if as_json:
            click.echo(json.dumps(row))
        else:
            click.echo(
                f"{row['id']}  {row['status']:<12} {row['endpoint']:<20} "
                f"user={row['user_id'] or '-'}  progress={row['progress']:.2f}  "
                f"tries={row['num_retries']}  created={row['created_at']}"
            )


@tasks.command()
@click.argument("task_id")
def show(task_id: str) -> None:
    """Show one task, with its data and result, as JSON."""
    with _session() as session:
        try:
            task = TaskRepository(session).read(task_id)
        except NotFoundException:
            raise click.ClickException(f"no task with id {task_id!r}") from None
    row = {**_describe(task), "data": task.data, "result": task.result}
    click.echo(json.dumps(row, indent=2))


@tasks.command()
@click.option("--user", "user_id", default=None, help="Only this user's tasks.")
def count(user_id: str | None) -> None:
    """Count tasks by status."""
    with _session() as session:
        counts = TaskRepository(session).count(user_id=user_id)
    for status, number in counts.items():
        click.echo(f"{status:<13}{number}")


@tasks.command()
@click.argument("task_id")
def retry(task_id: str) -> None:
    """Send a FAILED task back to the queue (retries reset)."""
    with _session() as session:
        repository = TaskRepository(session)
        try:
            task = repository.read(task_id)
        except NotFoundException:
            raise click.ClickException(f"no task with id {task_id!r}") from None
        if task.status != Status.FAILED:
            raise click.ClickException(
                f"task {task_id} is {Status(task.status).value}; only failed tasks are retried"
            )
        repository.retry_task(task_id)
    click.echo(f"task {task_id} queued again")


@tasks.command()
@click.option(
    "--older-than",
    "older_than",
    required=True,
    help="Age of the finished tasks to delete: 3600, 90s, 15m, 12h, 7d, 2w.",
)
def purge(older_than: str) -> None:
    """Delete COMPLETED and FAILED tasks that finished longer ago than --older-than."""
    seconds = parse_age(older_than)
    with _session() as session:
        deleted = TaskRepository(session).purge(seconds)
    click.echo(f"deleted {deleted} finished task(s)")
