"""Cancellation: waiting tasks at once, running ones when their handler ends."""

import threading

import pytest

from aana.exceptions.db import NotFoundException, TaskAlreadyFinishedException
from aana.sdk import AanaSDK
from aana.storage.models import Status
from aana.storage.repository import TaskRepository
from aana.storage.session import get_session
from aana.tasks import Worker, WorkerOptions
from tests.helpers import backdate, wait_until


@pytest.fixture
def app(db):
    return AanaSDK()


def start_worker(app, **options):
    worker = Worker(app, WorkerOptions(**{"concurrency": 2, "poll_interval": 0.05, **options}))
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    return worker, thread


def test_cancel__waiting_task_is_cancelled_at_once_and_never_claimed(app):
    task_id = app.defer("ep", {})
    scheduled = app.defer("ep", {}, schedule_in=3600)
    cancelled = app.cancel_task(task_id)
    assert cancelled.status == Status.CANCELLED and cancelled.completed_at is not None
    with get_session() as session:
        repository = TaskRepository(session)
        assert repository.cancel(scheduled).status == Status.CANCELLED
        backdate(session, [scheduled], 7200, columns=["scheduled_at"])
        assert repository.fetch_unprocessed_tasks() == []
        counts = repository.count()
        assert (counts["cancelled"], counts["total"]) == (2, 2)
        assert repository.filter_incomplete_tasks([task_id, scheduled]) == []


def test_cancel__unknown_or_malformed_id_raises_not_found(app):
    with pytest.raises(NotFoundException):
        app.cancel_task("00000000-0000-0000-0000-000000000000")
    with pytest.raises(NotFoundException):
        app.cancel_task("not-a-uuid")


@pytest.mark.parametrize("status", [Status.COMPLETED, Status.FAILED, Status.CANCELLED])
def test_cancel__finished_task_raises_a_typed_error_and_changes_nothing(app, status):
    task_id = app.defer("ep", {})
    with get_session() as session:
        TaskRepository(session).update_status(task_id, status, result={"r": 1})
    before = app.get_task(task_id)
    with pytest.raises(TaskAlreadyFinishedException, match=f"already {status.value}") as caught:
        app.cancel_task(task_id)
    assert isinstance(caught.value, ValueError) and caught.value.status == status.value
    after = app.get_task(task_id)
    assert (after.status, after.updated_at, after.result) == (status, before.updated_at, {"r": 1})


def test_cancel__running_handler_sees_it_and_ends_cancelled_whatever_it_returns(app):
    started = threading.Event()
    seen = {"polls": 0}

    @app.task("long")
    def long(data, context):
        started.set()
        while not context.should_abort():
            seen["polls"] += 1
            threading.Event().wait(0.01)
        seen["progress"] = context.report_progress(0.5)
        return {"partial": True}

    task_id = app.defer("long", {})
    worker, thread = start_worker(app)
    try:
        assert started.wait(10)
        assert app.get_task(task_id).status == Status.RUNNING
        assert app.cancel_task(task_id).status == Status.RUNNING  # asked, not yet ended
        polls_at_cancel = seen["polls"]
        wait_until(lambda: app.get_task(task_id).status == Status.CANCELLED)
        # The poll under way when the request was stored may miss it; the next one sees it.
        assert seen["polls"] - polls_at_cancel <= 1
    finally:
        worker.stop(grace=1)
        thread.join(10)
    task = app.get_task(task_id)
    assert task.completed_at is not None and seen["progress"] is False
    with pytest.raises(TaskAlreadyFinishedException):
        app.cancel_task(task_id)


def test_cancel__lost_running_task_ends_cancelled_not_retried(app):
    task_id = app.defer("ep", {})
    with get_session() as session:
        repository = TaskRepository(session)
        assert len(repository.fetch_unprocessed_tasks(limit=1)) == 1
        repository.cancel(task_id)
        backdate(session, [task_id], 120)
        (expired,) = repository.update_expired_tasks(600, 60, max_retries=5)
    assert expired.status == Status.CANCELLED and expired.completed_at is not None


def test_cancel__handed_back_task_ends_cancelled(app):
    gate = threading.Event()
    started = threading.Event()

    @app.task("hold")
    def hold(data):
        started.set()
        gate.wait(10)

    task_id = app.defer("hold", {})
    worker, thread = start_worker(app)
    assert started.wait(10)
    app.cancel_task(task_id)
    worker.stop(grace=0)  # hands the running task back at once
    thread.join(10)
    gate.set()
    assert app.get_task(task_id).status == Status.CANCELLED


def test_purge__deletes_old_cancelled_tasks(app):
    task_id = app.defer("ep", {})
    app.cancel_task(task_id)
    with get_session() as session:
        backdate(session, [task_id], 3600, columns=["completed_at"])
        assert TaskRepository(session).purge(60) == 1
