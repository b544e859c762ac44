"""Scheduled tasks: due by the database clock, bad input refused with nothing written."""

import asyncio
import threading
import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import func, select

from aana.exceptions.db import InvalidTypeException, InvalidValueException
from aana.sdk import AanaSDK
from aana.storage.dialects import utcnow
from aana.storage.models import Status, TaskEntity
from aana.storage.repository import TaskRepository
from aana.storage.session import get_session
from aana.tasks import Worker, WorkerOptions
from tests.helpers import backdate, wait_until


@pytest.fixture
def app(db):
    return AanaSDK()


def claim_all():
    with get_session() as session:
        return {str(task.id) for task in TaskRepository(session).fetch_unprocessed_tasks()}


def database_now():
    with get_session() as session:
        return session.scalar(select(utcnow()))


def make_due(task_ids):
    with get_session() as session:
        backdate(session, task_ids, 1, columns=["scheduled_at"])


def test_schedule_in__task_is_stored_at_once_and_claimed_only_once_due(app):
    later = app.defer("ep", {"n": 1}, schedule_in=3600)
    later_delta = app.defer("ep", {"n": 2}, schedule_in=timedelta(hours=1))
    now = app.defer("ep", {"n": 3})
    assert claim_all() == {now}
    stored = app.get_task(later)
    assert stored.status == Status.CREATED
    assert stored.scheduled_at - database_now() > timedelta(minutes=59)
    make_due([later, later_delta])
    assert claim_all() == {later, later_delta}


def test_schedule_at__aware_datetime_is_compared_with_the_database_clock(app):
    future = app.defer("ep", {}, schedule_at=database_now() + timedelta(hours=1))
    past = app.defer("ep", {}, schedule_at=datetime(2020, 1, 1, tzinfo=UTC))
    plus_two = datetime(2020, 1, 1, 4, tzinfo=timezone(timedelta(hours=2)))
    shifted = app.defer("ep", {}, schedule_at=plus_two)
    assert claim_all() == {past, shifted}
    assert app.get_task(shifted).scheduled_at == datetime(2020, 1, 1, 2, tzinfo=UTC)
    make_due([future])
    assert claim_all() == {future}


def test_defer_many_and_handles__take_the_same_schedule(app):
    @app.task("later")
    def later(data):
        return data

    ids = app.defer_many("later", [1, 2, 3], schedule_in=600)
    handle_id = later.defer(4, schedule_in=600)
    handle_ids = later.defer_many([5, 6], schedule_in=timedelta(minutes=10))
    assert later(7) == 7  # still the plain function
    assert claim_all() == set()
    make_due([*ids, handle_id, *handle_ids])
    assert claim_all() == {*ids, handle_id, *handle_ids}


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"schedule_at": datetime(2030, 1, 1)}, InvalidValueException, "naive"),
        (
            {"schedule_at": datetime(2030, 1, 1, tzinfo=UTC), "schedule_in": 5},
            InvalidValueException,
            "not both",
        ),
        ({"schedule_in": -1}, InvalidValueException, "0 seconds or more"),
        ({"schedule_in": timedelta(seconds=-1)}, InvalidValueException, "0 seconds or more"),
        ({"schedule_in": float("nan")}, InvalidValueException, "finite"),
        ({"schedule_in": "5"}, InvalidTypeException, "seconds"),
        ({"schedule_at": "2030-01-01"}, InvalidTypeException, "datetime"),
    ],
)
def test_schedule__bad_input_raises_a_typed_error_and_writes_nothing(app, options, error, message):
    with pytest.raises(error, match=message):
        app.defer("ep", {}, **options)
    with pytest.raises(error, match=message):
        app.defer_many("ep", [{}, {}], **options)
    with get_session() as session:
        assert session.scalar(select(func.count()).select_from(TaskEntity)) == 0


def test_worker__runs_a_scheduled_task_once_due_not_before(app):
    ran = threading.Event()

    @app.task("alarm")
    def alarm(data):
        ran.set()
        return "rang"

    task_id = app.defer("alarm", {}, schedule_in=3600)
    worker = Worker(app, WorkerOptions(poll_interval=0.05))
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        wait_until(lambda: worker.listener.listening.is_set() or not worker.options.listen)
        assert not ran.wait(0.3)  # not due: left alone (no timeout is raced here)
        make_due([task_id])
        wait_until(lambda: app.get_task(task_id).status == Status.COMPLETED)
    finally:
        worker.stop(grace=1)
        thread.join(10)
    assert app.get_task(task_id).result == "rang"


def test_burst_worker__leaves_tasks_not_yet_due_and_exits(app):
    @app.task("later")
    def later(data):
        return data

    task_id = app.defer("later", 1, schedule_in=3600)
    Worker(app, WorkerOptions(burst=True, poll_interval=0.05)).run()
    assert app.get_task(task_id).status == Status.CREATED


def test_idle_worker__wakes_when_a_task_becomes_due_not_at_its_next_poll(app):
    @app.task("soon")
    def soon(data):
        return "ok"

    worker = Worker(app, WorkerOptions(poll_interval=60))
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        task_id = app.defer("soon", {}, schedule_in=0.3)
        # Far sooner than the 60 s poll: the worker waits for the due time itself.
        wait_until(lambda: app.get_task(task_id).status == Status.COMPLETED, timeout=20)
    finally:
        worker.stop(grace=1)
        thread.join(10)
    task = app.get_task(task_id)
    assert task.assigned_at >= task.scheduled_at  # never before its time


def test_async_twins__defer_read_and_cancel(app):
    @app.task("later")
    def later(data):
        return data

    async def scenario():
        first = await app.defer_async("later", {"n": 1}, schedule_in=60)
        many = await later.defer_many_async([{"n": 2}, {"n": 3}], schedule_in=60)
        same = await later.defer_async({"n": 4}, dedupe_key="k")
        again = await app.defer_async("later", {"n": 5}, dedupe_key="k")
        cancelled = await app.cancel_task_async(first)
        return first, many, same, again, cancelled, await app.get_task_async(many[0])

    first, many, same, again, cancelled, read = asyncio.run(scenario())
    assert same == again and len(many) == 2
    assert (cancelled.id, cancelled.status) == (uuid.UUID(first), Status.CANCELLED)
    assert read.status == Status.CREATED
    with pytest.raises(InvalidValueException, match="naive"):
        asyncio.run(app.defer_async("later", {}, schedule_at=datetime(2030, 1, 1)))
