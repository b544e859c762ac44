"""The listener: idle workers wake on new tasks, on both backends, and survive its loss."""

import logging
import threading
import time

import psycopg
import pytest

from aana.sdk import AanaSDK
from aana.storage.models import Status
from aana.tasks import Worker, WorkerOptions
from aana.tasks.listener import Listener
from tests.conftest import PG_SERVER


def wait_for(condition, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.005)


@pytest.fixture
def app(db):
    return AanaSDK()


@pytest.fixture
def listener(db):
    wake = threading.Event()
    listener = Listener(db.get_engine(), wake)
    listener.start()
    wait_for(listener.listening.is_set)
    yield listener
    listener.stop()


def woken_by_a_defer(listener, app):
    """Whether a task deferred from another connection sets ``wake`` (counted)."""
    time.sleep(0.05)  # let the changes of setting up pass (SQLite counts every commit)
    listener.wake.clear()
    before = listener.wakeups
    app.defer("anything", {})
    wait_for(listener.wake.is_set)
    return listener.wakeups > before


def kill_connection(listener, db):
    if db.datastore_type == "postgresql":
        pid = listener.backend_pid
        assert pid is not None
        with psycopg.connect(dbname="postgres", autocommit=True, **PG_SERVER) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
    else:
        listener.drop_connection()


def test_listener__uses_a_connection_of_its_own_outside_the_pool(listener, db):
    pool = db.get_engine().pool
    assert listener.connections == 1
    assert pool.checkedout() == 0
    if db.datastore_type == "postgresql":
        assert listener.backend_pid is not None


def test_listener__a_defer_from_another_connection_wakes_it(listener, app):
    assert woken_by_a_defer(listener, app)


def test_listener__reconnects_after_its_connection_is_killed_logging_once(
    listener, app, db, caplog
):
    caplog.set_level(logging.INFO, logger="aana.tasks.listener")
    kill_connection(listener, db)
    wait_for(lambda: listener.connections == 2 and listener.listening.is_set())
    assert woken_by_a_defer(listener, app)
    messages = [record.getMessage() for record in caplog.records]
    lost = [m for m in messages if "notifications lost" in m or "unavailable" in m]
    assert len(lost) == 1, messages
    assert len([m for m in messages if "notifications back" in m]) == 1, messages
    assert all(record.exc_info is None for record in caplog.records)


def test_listener__an_outage_is_logged_once_and_its_end_once(listener, app, db, caplog):
    caplog.set_level(logging.INFO, logger="aana.tasks.listener")
    engine = db.get_engine()
    url = engine.url
    engine.url = url.set(database=url.database + "_missing_for_a_while")  # connects fail
    try:
        kill_connection(listener, db)
        if db.datastore_type == "sqlite":
            # SQLite creates a missing file: make the path unusable instead.
            engine.url = url.set(database="/nonexistent-folder/aana.db")
        wait_for(lambda: not listener.listening.is_set())
        time.sleep(1.0)  # several reconnection attempts fail meanwhile
    finally:
        engine.url = url
    wait_for(lambda: listener.listening.is_set(), timeout=15)
    assert woken_by_a_defer(listener, app)
    messages = [record.getMessage() for record in caplog.records]
    assert len([m for m in messages if "notifications lost" in m]) == 1, messages
    assert len([m for m in messages if "unavailable" in m]) == 0, messages
    assert len([m for m in messages if "notifications back" in m]) == 1, messages


def test_worker__idle_worker_is_woken_by_the_listener_not_by_polling(app):
    done = threading.Event()

    @app.task("ping")
    def ping(data):
        done.set()
        return "pong"

    worker = Worker(app, WorkerOptions(concurrency=1, poll_interval=30.0))
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        wait_for(worker.listener.listening.is_set)
        time.sleep(0.2)  # idle: waiting on the wake event, for up to 30 s
        before = worker.listener.wakeups
        task_id = app.defer("ping", {})
        assert done.wait(10), "the idle worker was not woken"
        wait_for(lambda: app.get_task(task_id).status == Status.COMPLETED)
        assert worker.listener.wakeups > before
    finally:
        worker.stop()
        thread.join(timeout=10)
    assert not thread.is_alive()
