"""A worker's turn on SQLite, on the sqlite3 module's API (``aana.storage.queue_driver_sqlite``).

It must store, fence and claim as ``queue_sql.finish_many`` and ``queue_sql.claim`` run by
SQLAlchemy do, fail as they fail, and write nothing when it fails.
"""

from __future__ import annotations

import shutil
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, event, text

from aana.configs.db import DbSettings
from aana.exceptions.db import DatabaseConnectionException, DatabaseNotMigratedError
from aana.sdk import AanaSDK
from aana.storage import queue_sql
from aana.storage.errors import translate_errors
from aana.storage.models.task import Status
from aana.storage.queue_driver_sqlite import DriverTurn
from aana.storage.queue_sql import Attempt, ClaimRequest
from aana.tasks.manager import Job, QueueManager
from aana.tasks.worker import _database_unavailable
from tests.helpers import CLAIM_REQUESTS, mixed_queue


@pytest.fixture
def lite(db: DbSettings) -> DbSettings:
    if db.datastore_type != "sqlite":
        pytest.skip("PostgreSQL settles a turn in one statement (test_finish_and_claim.py)")
    return db


def results_of(jobs: list[Job], value: Any = "done") -> list[dict[str, Any]]:
    """``finish_many``'s rows for COMPLETED outcomes, as ``QueueManager.settle`` builds them."""
    return [
        {
            **queue_sql.attempt_params(job.attempt),
            "new_status": Status.COMPLETED,
            "new_result": value,
            "new_progress": 1.0,
            "retry_delay": None,
        }
        for job in jobs
    ]


def table(engine: Engine) -> list[tuple[Any, ...]]:
    with engine.connect() as connection:
        query = text("SELECT id, status, result, progress, num_retries FROM tasks ORDER BY id")
        return [tuple(row) for row in connection.execute(query)]


@contextmanager
def driver_statements(engine: Engine) -> Iterator[list[str]]:
    """The statements the driver runs on connections checked out in the block.

    The first word of each; a statement run over many rows counts once, and those that
    triggers run are left out.
    """
    sent: list[str] = []

    def record(sql: str) -> None:
        word = sql.split()[0]
        if not word.startswith("--") and sent[-1:] != [word]:
            sent.append(word)

    def trace(dbapi_connection: sqlite3.Connection, *_: Any) -> None:
        dbapi_connection.set_trace_callback(record)

    def untrace(dbapi_connection: sqlite3.Connection, *_: Any) -> None:
        dbapi_connection.set_trace_callback(None)

    event.listen(engine, "checkout", trace)
    event.listen(engine, "checkin", untrace)
    try:
        yield sent
    finally:
        event.remove(engine, "checkout", trace)
        event.remove(engine, "checkin", untrace)


@pytest.mark.parametrize("kind", CLAIM_REQUESTS)
def test_driver_turn__stores_and_claims_what_the_core_statements_do(
    lite: DbSettings, kind: str
) -> None:
    app = AanaSDK()
    for n, user in enumerate(["ann", "bob", None]):
        app.defer("ep", {"running": n}, user_id=user, priority=10)
    manager = app.task_queue()
    running = manager.settle([], ClaimRequest(3, 3, (), 0))[1]
    engine = lite.get_engine()
    mixed_queue(app, engine)
    request = CLAIM_REQUESTS[kind]
    results = results_of(running, {"n": [1, 2.5, "é", None]})
    with engine.connect() as connection:  # the Core statements, rolled back
        stored = connection.execute(queue_sql.finish_many(), results).rowcount
        core = connection.execute(queue_sql.claim(request, job=True), request.parameters()).all()
        core_table = [tuple(row) for row in connection.execute(text("SELECT * FROM tasks"))]
        connection.rollback()
    assert stored == len(running)
    assert core, "the request claims something"

    driver = DriverTurn(engine)(results, request)

    assert driver is not None
    # The same tasks, and the same columns but the claim's time (RETURNING has no order).
    assert sorted(row[:2] + row[3:] for row in driver) == sorted(row[:2] + row[3:] for row in core)
    assert [type(value) for value in driver[0]] == [type(value) for value in core[0]]
    assert all(row[2].utcoffset() is not None for row in driver)  # assigned_at, aware
    with engine.connect() as connection:
        driver_table = [tuple(row) for row in connection.execute(text("SELECT * FROM tasks"))]
        names = [row[1] for row in connection.execute(text("PRAGMA table_info(tasks)"))]
    # Every column of every row alike, but the times the two paths wrote.
    times = {"assigned_at", "updated_at", "completed_at"}
    kept = [n for n, name in enumerate(names) if name not in times]
    assert sorted([row[n] for n in kept] for row in driver_table) == sorted(
        [row[n] for n in kept] for row in core_table
    )
    for job in running:
        task = app.get_task(str(job.id))
        assert (task.status, task.result) == (Status.COMPLETED, {"n": [1, 2.5, "é", None]})


def test_driver_turn__a_none_result_is_stored_as_the_core_statement_stores_it(
    lite: DbSettings,
) -> None:
    # A handler that returns None: JSON null, as SQLAlchemy's JSON stores None, not SQL NULL.
    app = AanaSDK()
    app.defer("ep", {})
    running = app.task_queue().settle([], ClaimRequest(1, 3, (), 0))[1]
    engine = lite.get_engine()
    results = results_of(running, None)
    stored = text("SELECT result, result IS NULL FROM tasks")
    with engine.connect() as connection:  # the Core statement, rolled back
        connection.execute(queue_sql.finish_many(), results)
        core = [tuple(row) for row in connection.execute(stored)]
        connection.rollback()

    assert DriverTurn(engine)(results, None) == []

    with engine.connect() as connection:
        driver = [tuple(row) for row in connection.execute(stored)]
    assert driver == core == [("null", 0)]


def test_driver_turn__one_write_transaction_of_two_statements(lite: DbSettings) -> None:
    app = AanaSDK()
    app.defer_many("ep", [{"n": n} for n in range(4)])
    manager = app.task_queue()
    running = manager.settle([], ClaimRequest(2, 3, (), 0))[1]
    outcomes = [(job.attempt, Status.COMPLETED, None) for job in running]
    with driver_statements(lite.get_engine()) as sent:
        written, jobs = manager.settle(outcomes, ClaimRequest(2, 3, (), 25))
    assert (written, len(jobs)) == ({job.id for job in running}, 2)
    assert sent == ["BEGIN", "UPDATE", "WITH", "COMMIT"]


def test_driver_turn__a_stale_attempt_writes_nothing_and_says_so(lite: DbSettings) -> None:
    app = AanaSDK()
    app.defer_many("ep", [{"n": n} for n in range(3)])
    manager = app.task_queue()
    fresh, stale = manager.settle([], ClaimRequest(2, 3, (), 0))[1]
    engine = lite.get_engine()
    before = table(engine)
    gone = Attempt(stale.id, stale.attempt.number, stale.attempt.assigned_at - timedelta(1))
    results = results_of([fresh]) + results_of([Job(gone, stale.endpoint, {}, None)])
    assert DriverTurn(engine)(results, ClaimRequest(5, 3, (), 0)) is None
    assert table(engine) == before  # neither the fresh result nor a claim
    # The manager then takes the general path: the fresh result only, and the claim.
    outcomes = [(fresh.attempt, Status.COMPLETED, "ok"), (gone, Status.COMPLETED, "late")]
    written, jobs = manager.settle(outcomes, ClaimRequest(5, 3, (), 0))
    assert written == {fresh.id}
    assert len(jobs) == 1


def test_driver_turn__a_refused_value_is_the_core_path_error_and_writes_nothing(
    lite: DbSettings,
) -> None:
    app = AanaSDK()
    app.defer_many("ep", [{"n": n} for n in range(3)])
    manager = app.task_queue()
    running = manager.settle([], ClaimRequest(2, 3, (), 0))[1]
    engine = lite.get_engine()
    before = table(engine)
    refused = results_of(running[:1]) + results_of(running[1:], float("nan"))
    with pytest.raises((ValueError, TypeError)) as driver_error:
        DriverTurn(engine)(refused, ClaimRequest(5, 3, (), 0))
    with (
        pytest.raises((ValueError, TypeError)) as core_error,
        translate_errors("settling 2 task(s) and claiming"),
        engine.begin() as connection,
    ):
        connection.execute(queue_sql.finish_many(), refused)
    assert type(driver_error.value) is type(core_error.value)
    assert str(driver_error.value) == str(core_error.value)
    assert table(engine) == before


def test_driver_turn__an_unmigrated_database_says_so(lite: DbSettings) -> None:
    engine = lite.get_engine()
    with engine.begin() as connection:
        connection.execute(text("DROP TABLE tasks"))
    with pytest.raises(DatabaseNotMigratedError, match="tasks"):
        DriverTurn(engine)([], ClaimRequest(5, 3, (), 0))


def test_driver_turn__a_held_write_lock_is_the_database_being_unavailable(
    lite: DbSettings,
) -> None:
    app = AanaSDK()
    app.defer("ep", {})
    busy = DbSettings(datastore_config=lite.datastore_config, connection_timeout=1)
    blocker = sqlite3.connect(str(lite.datastore_config["path"]), isolation_level=None)  # type: ignore[typeddict-item]
    blocker.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(Exception) as error:
            QueueManager(busy.get_engine()).settle([], ClaimRequest(5, 3, (), 0))
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert "database is locked" in str(error.value)
    assert _database_unavailable(error.value)  # the worker keeps its results and waits
    assert [job.endpoint for job in app.task_queue().settle([], ClaimRequest(5, 3, (), 0))[1]] == [
        "ep"
    ]


def test_driver_turn__a_file_that_cannot_be_opened_is_a_connection_error(
    lite: DbSettings, tmp_path: Path
) -> None:
    folder = tmp_path / "gone"
    folder.mkdir()
    engine = DbSettings(datastore_config={"path": str(folder / "aana.db")}).get_engine()
    shutil.rmtree(folder)  # no connection was made yet: none can be now
    with pytest.raises(DatabaseConnectionException, match="Cannot connect") as error:
        DriverTurn(engine)([], ClaimRequest(5, 3, (), 0))
    assert _database_unavailable(error.value)
