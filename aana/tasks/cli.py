"""``aana worker`` and ``aana tasks``: run the queue's workers and inspect its tasks."""

from __future__ import annotations

import io
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
from aana.tasks.selection import (
    TaskSelection,
    count_purgeable,
    purge_in_chunks,
    selection_options,
)
from aana.tasks.selection import retry as retry_selected
from aana.tasks.table import render_table

if TYPE_CHECKING:
    from aana.sdk import AanaSDK
from aana.storage.repository.task import TaskRepository


class AppPathUsageError(click.ClickException):
    """APP_PATH does not name an AanaSDK: a one-line error and exit code 2."""

    exit_code = 2


def _require_prometheus_client() -> None:
    """Refuse ``--metrics-port`` at once, not in each worker process, without the extra."""
    import importlib.util

    if importlib.util.find_spec("prometheus_client") is None:
        raise click.UsageError(
            "--metrics-port needs prometheus_client: pip install 'aana-storage[api]'"
        )


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
    "--prefetch",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Tasks each process claims ahead of its handler threads (for many short tasks).",
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
@click.option(
    "--metrics-port",
    type=click.IntRange(min=1, max=65535),
    default=None,
    help="Serve Prometheus metrics on this port (process n: port + n); needs the api extra.",
)
@click.option(
    "--metrics-host",
    default="127.0.0.1",
    show_default=True,
    help="Address the metrics are served on (0.0.0.0: every interface).",
)
@click.option("--burst", is_flag=True, help="Exit when the queue is empty.")
@click.option(
    "--no-listen",
    is_flag=True,
    help="Poll only: no PostgreSQL notifications, no watching SQLite for changes.",
)
@click.option(
    "--listen-url",
    default=None,
    help="Direct PostgreSQL URL for notifications when the database is reached "
    "through a transaction pooler (PgBouncer) [task_queue.listen_url].",
)
def worker(
    app_path: str,
    processes: int | None,
    concurrency: int,
    prefetch: int,
    heartbeat_timeout: float | None,
    execution_timeout: float | None,
    max_retries: int | None,
    max_active_per_user: int | None,
    poll_interval: float | None,
    shutdown_grace: float | None,
    metrics_port: int | None,
    metrics_host: str,
    burst: bool,
    no_listen: bool,
    listen_url: str | None,
) -> None:
    """Run the task handlers of APP_PATH (module:attribute of an AanaSDK) until stopped.

    SIGTERM or Ctrl-C stops claiming and lets running tasks finish within the grace
    period; a second one hands them back to the queue at once.
    """
    from aana.storage.engine import EngineSpec
    from aana.tasks.budget import check_budget
    from aana.tasks.supervisor import become_supervisor, run_workers
    from aana.tasks.worker import WorkerOptions

    app = load_app(app_path)
    queue_settings = app.settings.task_queue
    options = WorkerOptions.from_settings(
        queue_settings,
        concurrency=concurrency,
        prefetch=prefetch,
        heartbeat_timeout=heartbeat_timeout,
        execution_timeout=execution_timeout,
        max_retries=max_retries,
        poll_interval=poll_interval,
        shutdown_grace=shutdown_grace,
        burst=burst or None,
        listen=False if no_listen else None,
        listen_url=listen_url,
        maximum_active_tasks_per_user=max_active_per_user,
        metrics_port=metrics_port,
        metrics_host=metrics_host,
    )  # checked before the database is asked anything
    if metrics_port is not None:
        _require_prometheus_client()
    _require_migrated(app, app_path)
    processes = processes or queue_settings.num_workers
    check_budget(app.settings.db_config, processes, options.listen)
    # The checks' connection is not kept: each worker process has an engine of its own.
    app.settings.db_config.get_engine().dispose()
    database = EngineSpec.of(app.settings.db_config)
    if processes > 1:
        # The supervisor only starts and waits for processes: it need not keep what this
        # command imported to get here (about 80 MB).
        become_supervisor(app_path, processes, options, database)
    sys.exit(run_workers(app_path, processes, options, database))


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


def _cancel_command() -> click.Command:
    from aana.tasks.cli_cancel import cancel

    return cancel


def parse_age(value: str) -> float:
    """``90``, ``90s``, ``15m``, ``12h``, ``7d``, ``2w`` in seconds."""
    match = _AGE.match(value.strip())
    if match is None:
        raise click.BadParameter(f"{value!r} is not an age such as 3600, 90s, 15m, 12h, 7d or 2w")
    return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]


@click.group()
def tasks() -> None:
    """Inspect and manage the task queue's tasks (database from DB_CONFIG)."""


LIST_COLUMNS = ("ID", "STATUS", "ENDPOINT", "USER", "PRIORITY", "PROGRESS", "TRIES", "CREATED")
_JSON = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")


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
    """List tasks, newest first, as a table."""
    with _session() as session:
        found = TaskRepository(session).get_tasks(
            user_id=user_id,
            status=Status(status) if status else None,
            limit=limit or None,
            offset=offset,
            endpoint=endpoint,
        )
    rows = [_describe(task) for task in found]
    if as_json:
        for row in rows:
            click.echo(json.dumps(row))
        return
    click.echo(
        render_table(
            LIST_COLUMNS,
            [
                (
                    row["id"],
                    row["status"],
                    row["endpoint"],
                    row["user_id"],
                    row["priority"],
                    f"{row['progress']:.2f}",
                    row["num_retries"],
                    row["created_at"],
                )
                for row in rows
            ],
        )
    )


@tasks.command()
@click.argument("task_id")
@click.option("--traceback", "traceback_only", is_flag=True, help="Print only the traceback.")
@_JSON
def show(task_id: str, traceback_only: bool, as_json: bool) -> None:
    """Show one task, with its data and result, as JSON (or its failure's traceback)."""
    from aana.tasks.cli_cancel import timing

    with _session() as session:
        try:
            task = TaskRepository(session).read(task_id)
        except NotFoundException:
            raise click.ClickException(f"no task with id {task_id!r}") from None
        when = timing(session, task)
    if traceback_only:
        stored = task.result.get("traceback") if isinstance(task.result, dict) else None
        if not stored:
            raise click.ClickException(f"task {task_id} has no stored traceback")
        click.echo(stored)
        return
    row = {**_describe(task), **when, "data": task.data, "result": task.result}
    click.echo(json.dumps(row, indent=None if as_json else 2))


@tasks.command()
@click.option("--user", "user_id", default=None, help="Only this user's tasks.")
@_JSON
def count(user_id: str | None, as_json: bool) -> None:
    """Count tasks by status, as a table."""
    with _session() as session:
        counts = TaskRepository(session).count(user_id=user_id)
    if as_json:
        click.echo(json.dumps(counts))
    else:
        click.echo(render_table(("STATUS", "COUNT"), counts.items()))


@tasks.command()
@selection_options([Status.FAILED])
@_JSON
def retry(
    task_ids: tuple[str, ...],
    statuses: tuple[str, ...],
    endpoint: str | None,
    user_id: str | None,
    as_json: bool,
) -> None:
    """Send FAILED tasks back to the queue (retries reset): TASK_IDS, or the tasks selected.

    With TASK_IDS every one must be a failed task, or none is retried. With filters,
    only failed tasks are ever retried: --status failed is implied.
    """
    selection = TaskSelection.from_options(task_ids, statuses, endpoint, user_id)
    with _session() as session:
        retried = retry_selected(session, selection)
    if as_json:
        click.echo(json.dumps({"retried": retried}))
        return
    for task_id in retried:
        click.echo(f"task {task_id} queued again")
    click.echo(f"{len(retried)} task(s) queued again")


tasks.add_command(_cancel_command())


@tasks.command()
@click.option(
    "--older-than",
    "older_than",
    required=True,
    help="Age of the finished tasks to delete: 3600, 90s, 15m, 12h, 7d, 2w.",
)
@click.option("--dry-run", is_flag=True, help="Only say how many tasks would be deleted.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation on a terminal.")
@click.option(
    "--chunk-size",
    type=click.IntRange(min=1),
    default=1000,
    show_default=True,
    help="Tasks deleted per transaction.",
)
@_JSON
def purge(older_than: str, dry_run: bool, yes: bool, chunk_size: int, as_json: bool) -> None:
    """Delete COMPLETED, FAILED and CANCELLED tasks that ended longer ago than --older-than.

    On a terminal it asks first (unless --yes), and shows a progress bar.
    """
    seconds = parse_age(older_than)
    with _session() as session:
        matching = count_purgeable(session, seconds)
        if dry_run:
            _report_purge(matching, as_json, dry_run=True)
            return
        interactive = sys.stdin.isatty() and sys.stdout.isatty()
        if interactive and matching and not yes:
            click.confirm(
                f"Delete {matching} finished task(s) older than {older_than}?", abort=True
            )
        deleted = 0
        with click.progressbar(
            # Not on a terminal, click would print the label: keep stdout for the result.
            length=matching,
            label="Deleting",
            file=None if interactive else io.StringIO(),
        ) as progress:
            for number in purge_in_chunks(session, seconds, chunk_size):
                deleted += number
                progress.update(number)
    _report_purge(deleted, as_json, dry_run=False)


def _report_purge(number: int, as_json: bool, dry_run: bool) -> None:
    if as_json:
        click.echo(json.dumps({"would_delete" if dry_run else "deleted": number}))
    elif dry_run:
        click.echo(f"would delete {number} finished task(s) (dry run: nothing deleted)")
    else:
        click.echo(f"deleted {number} finished task(s)")
