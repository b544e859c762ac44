"""Periodic tasks: exactly one task per period, however many workers run."""

import itertools
import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from aana.sdk import AanaSDK
from aana.storage.models import Status, TaskEntity
from aana.storage.session import get_session
from aana.tasks import Worker, WorkerOptions
from aana.tasks.periodic import InvalidCronExpressionError, PeriodicScheduler, PeriodicTask
from tests.helpers import REPO_ROOT, race, wait_until


def stored_tasks():
    with get_session() as session:
        query = select(TaskEntity.endpoint, TaskEntity.period_key, TaskEntity.scheduled_at)
        return list(session.execute(query.order_by(TaskEntity.scheduled_at)))


def scheduler_of(app, clock=None):
    manager = app.task_queue()

    def defer(task, start, key):
        return manager.defer_periodic(task.endpoint, task.data, task.priority, start, key)

    return PeriodicScheduler(app.periodic_tasks, defer, clock or manager.database_now)


@pytest.mark.parametrize("cron", ["every five minutes", "61 * * * *", "* * *", "", 5])
def test_periodic__invalid_cron_fails_at_registration(cron):
    app = AanaSDK()
    with pytest.raises(InvalidCronExpressionError, match="cron") as caught:

        @app.periodic(cron=cron)
        def job(data):
            return None

    assert isinstance(caught.value, ValueError)
    assert app.periodic_tasks == [] and "job" not in app.task_handlers


def test_periodic_task__periods_and_keys():
    task = PeriodicTask("*/5 * * * *", "refresh")
    at = datetime(2030, 1, 1, 12, 7, 30, tzinfo=UTC)
    assert task.latest_start(at) == datetime(2030, 1, 1, 12, 5, tzinfo=UTC)
    assert task.latest_start(datetime(2030, 1, 1, 12, 5, tzinfo=UTC)) == datetime(
        2030, 1, 1, 12, 5, tzinfo=UTC
    )
    assert task.next_start(at) == datetime(2030, 1, 1, 12, 10, tzinfo=UTC)
    assert task.period_key(datetime(2030, 1, 1, 12, 5, tzinfo=UTC)) == (
        "refresh@2030-01-01T12:05:00+00:00"
    )
    long_key = PeriodicTask("* * * * *", "e" * 300).period_key(at)
    assert long_key.startswith("sha256:") and len(long_key) <= 255


def test_periodic__one_task_per_period_and_a_missed_run_deferred_once(db):
    app = AanaSDK()
    app.periodic(cron="*/5 * * * *", endpoint="refresh", data={"full": True})
    scheduler = scheduler_of(app)
    at = datetime(2030, 1, 1, 12, 7, 30, tzinfo=UTC)
    assert scheduler.run_once(at) == ["refresh@2030-01-01T12:05:00+00:00"]
    assert scheduler.run_once(at + timedelta(minutes=2)) == []  # same period
    # A worker starting an hour later: the latest period only, not the twelve missed.
    assert scheduler.run_once(at + timedelta(hours=1)) == ["refresh@2030-01-01T13:05:00+00:00"]
    rows = stored_tasks()
    assert [row.period_key for row in rows] == [
        "refresh@2030-01-01T12:05:00+00:00",
        "refresh@2030-01-01T13:05:00+00:00",
    ]
    assert rows[0].scheduled_at == datetime(2030, 1, 1, 12, 5, tzinfo=UTC)


def test_periodic__four_processes_over_three_periods_defer_exactly_three_tasks(db, tmp_path):
    first = datetime(2030, 1, 1, 12, 0, 0, tzinfo=UTC).isoformat()
    script = str(REPO_ROOT / "tests" / "tasks" / "periodic_racer.py")
    stored = [key for keys in race(db, tmp_path, script, first) for key in keys]
    expected = [f"tick@2030-01-01T12:00:0{n}+00:00" for n in range(3)]
    assert sorted(stored) == expected  # each period stored by exactly one racer
    assert [row.period_key for row in stored_tasks()] == expected


def test_worker__defers_and_runs_periodic_tasks_once_per_period(db):
    app = AanaSDK()

    @app.periodic(cron="* * * * * *")
    def every_second(data):
        return "ran"

    workers = [Worker(app, WorkerOptions(poll_interval=0.05)) for _ in range(2)]
    threads = [threading.Thread(target=worker.run, daemon=True) for worker in workers]
    for thread in threads:
        thread.start()
    try:
        wait_until(lambda: len(stored_tasks()) >= 3, timeout=30)
    finally:
        for worker in workers:
            worker.stop(grace=5)
        for thread in threads:
            thread.join(10)
    rows = stored_tasks()
    keys = [row.period_key for row in rows]
    assert len(keys) == len(set(keys))
    # Whole seconds apart, none twice (a period the scheduler's thread slept through,
    # on a loaded machine, is skipped by design: the latest only is deferred).
    starts = [row.scheduled_at for row in rows]
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert all(gap >= timedelta(seconds=1) and gap.microseconds == 0 for gap in gaps)
    with get_session() as session:
        done = session.scalars(select(TaskEntity.status)).all()
    assert Status.COMPLETED in done
