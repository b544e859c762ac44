"""``task_counts``: the counts the database keeps, exact after every kind of write."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import inspect, text
from sqlalchemy.orm import Session

from aana.api import tasks_router
from aana.configs.db import DbSettings
from aana.configs.settings import Settings
from aana.sdk import AanaSDK
from aana.storage import op
from aana.storage.models import Status
from aana.storage.repository import TaskRepository
from aana.storage.session import get_session
from aana.tasks import Worker, WorkerOptions
from tests.helpers import BOTH_BACKENDS, run_in_threads, wait_until

Counts = dict[str, dict[str, int]]


def counted(db: DbSettings) -> Counts:
    """Tasks per endpoint and status, counted the slow way."""
    counts: Counts = {}
    with db.get_engine().connect() as connection:
        rows = connection.execute(
            text("SELECT endpoint, status, count(*) FROM tasks GROUP BY endpoint, status")
        )
        for endpoint, status, number in rows:
            counts.setdefault(endpoint, {})[status] = number
    return counts


def kept(db: DbSettings) -> Counts:
    """The same, from ``task_counts``, through the repository."""
    with Session(db.get_engine()) as session:
        return TaskRepository(session).count_by_endpoint()


def count_rows(db: DbSettings) -> tuple[int, int]:
    """Rows of ``task_counts``, and the endpoint-and-status pairs they hold."""
    with db.get_engine().connect() as connection:
        rows = connection.execute(
            text("SELECT count(*), count(DISTINCT endpoint || '/' || status) FROM task_counts")
        ).one()
    return int(rows[0]), int(rows[1])


def execute(db: DbSettings, sql: str, **params: Any) -> None:
    with db.get_engine().begin() as connection:
        connection.execute(text(sql), params)


@pytest.fixture
def app(db: DbSettings) -> AanaSDK:
    return AanaSDK()


def test_counts__follow_every_kind_of_write(db: DbSettings, app: AanaSDK) -> None:
    def same() -> None:
        truth = counted(db)
        assert kept(db) == truth
        with get_session() as session:
            repository = TaskRepository(session)
            by_status = repository.count()
            assert by_status["total"] == sum(sum(n.values()) for n in truth.values())
            for status in Status:
                number = sum(n.get(status.value, 0) for n in truth.values())
                assert by_status[status.value] == number
                assert repository.count_matching(status=status) == number
            for endpoint, numbers in truth.items():
                assert repository.count_matching(endpoint=endpoint) == sum(numbers.values())

    assert kept(db) == {}
    first = app.defer("a", {"n": 0})
    app.defer_many("b", [{"n": n} for n in range(40)])  # COPY on PostgreSQL
    same()
    with get_session() as session:
        repository = TaskRepository(session)
        repository.save("c", {"n": 1})
        claimed = repository.fetch_unprocessed_tasks(limit=5)
        same()
        repository.update_status(claimed[0].id, Status.RUNNING)
        repository.update_status(claimed[1].id, Status.COMPLETED, result={"ok": 1})
        repository.update_status(claimed[2].id, Status.FAILED, result={"error": "E"})
        same()
        repository.retry_task(claimed[2].id)
        repository.cancel(first)
        repository.delete(claimed[3].id)
        same()
    execute(db, "UPDATE tasks SET endpoint = 'moved' WHERE endpoint = 'b' AND status = 'created'")
    execute(db, "UPDATE tasks SET progress = 0.5")  # no status changes: nothing to count
    execute(
        db,
        "DELETE FROM tasks WHERE endpoint = 'moved' AND priority = 0 AND id IN "
        "(SELECT id FROM tasks WHERE endpoint = 'moved' ORDER BY id LIMIT 7)",
    )
    same()


def test_counts__a_rolled_back_write_changes_nothing(db: DbSettings, app: AanaSDK) -> None:
    app.defer_many("a", [{"n": n} for n in range(5)])
    before = kept(db)
    with db.get_engine().connect() as connection:
        connection.execute(text("UPDATE tasks SET status = 'running'"))
        connection.execute(text("DELETE FROM tasks WHERE status = 'running'"))
        connection.rollback()
    assert kept(db) == before == counted(db)


def test_counts__emptying_the_table_empties_them(db: DbSettings, app: AanaSDK) -> None:
    app.defer_many("a", [{"n": n} for n in range(5)])
    execute(db, "DELETE FROM tasks")  # SQLite: its truncate shortcut would skip triggers
    assert kept(db) == {}
    if db.datastore_type == "postgresql":
        app.defer_many("a", [{"n": n} for n in range(5)])
        execute(db, "TRUNCATE tasks")
        assert kept(db) == {}


def test_compact_counts__one_row_per_endpoint_and_status_same_numbers(
    db: DbSettings, app: AanaSDK
) -> None:
    for n in range(30):
        app.defer("a" if n % 2 else "b", {"n": n})
    with get_session() as session:
        TaskRepository(session).fetch_unprocessed_tasks(limit=10)
    rows, pairs = count_rows(db)
    if db.datastore_type == "postgresql":
        assert rows > pairs  # one row per statement that changed something
    else:
        assert rows == pairs  # SQLite keeps one row per pair
    before = kept(db)
    with get_session() as session:
        TaskRepository(session).compact_counts()
    assert count_rows(db) == (pairs, pairs)
    assert kept(db) == before == counted(db)


def test_compact_counts__concurrent_with_writers_and_itself_loses_nothing(
    db: DbSettings, app: AanaSDK
) -> None:
    stop = threading.Event()

    def writer(endpoint: str) -> None:
        for n in range(60):
            app.defer(endpoint, {"n": n})
            with get_session() as session:
                TaskRepository(session).fetch_unprocessed_tasks(limit=1)
        stop.set()

    def compactor() -> None:
        while not stop.is_set():
            with get_session() as session:
                TaskRepository(session).compact_counts()

    run_in_threads(lambda: writer("a"), lambda: writer("b"), compactor, compactor)
    assert kept(db) == counted(db)


def task_count_ids(db: DbSettings) -> list[int]:
    with db.get_engine().connect() as connection:
        return list(connection.scalars(text("SELECT id FROM task_counts ORDER BY id")))


def test_compact_counts__with_nothing_to_fold_writes_nothing(db: DbSettings, app: AanaSDK) -> None:
    app.defer_many("a", [{"n": n} for n in range(3)])
    app.defer_many("b", [{"n": n} for n in range(3)])
    with get_session() as session:
        TaskRepository(session).compact_counts()
        before = task_count_ids(db)
        TaskRepository(session).compact_counts()
    assert task_count_ids(db) == before  # not deleted and inserted again
    assert kept(db) == {"a": {"created": 3}, "b": {"created": 3}}


def refuse_compaction(db: DbSettings) -> None:
    """Make every compaction fail (PostgreSQL): deleting from task_counts raises."""
    execute(
        db,
        "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS "
        "$$ BEGIN RAISE EXCEPTION 'no compaction here'; END $$",
    )
    execute(
        db,
        "CREATE TRIGGER refuse BEFORE DELETE ON task_counts "
        "FOR EACH STATEMENT EXECUTE FUNCTION refuse()",
    )


@pytest.fixture
def folding_db(db: DbSettings) -> DbSettings:
    """``db`` where counts are folded (PostgreSQL); SQLite has nothing to compact."""
    if db.datastore_type != "postgresql":
        pytest.skip("SQLite has nothing to compact")
    return db


@pytest.mark.postgresql
def test_worker__a_failing_compaction_holds_up_neither_heartbeats_nor_the_sweep(
    folding_db: DbSettings, app: AanaSDK, caplog: pytest.LogCaptureFixture
) -> None:
    db = folding_db

    @app.task("noop")
    def noop(data: Any) -> None:
        return None

    app.defer("noop", {"n": 0})
    app.defer("noop", {"n": 1})
    with get_session() as session:
        [lost, _] = TaskRepository(session).fetch_unprocessed_tasks(limit=2)
    backdate_sql = (
        "UPDATE tasks SET assigned_at = assigned_at - interval '1 hour', "
        "updated_at = updated_at - interval '1 hour' WHERE id = :id"
    )
    execute(db, backdate_sql, id=lost.id)  # its worker went silent an hour ago
    refuse_compaction(db)
    options = WorkerOptions(concurrency=2, poll_interval=0.05, heartbeat_timeout=1, max_retries=5)
    worker = Worker(app, options)
    thread = threading.Thread(target=worker.run, daemon=True)
    with caplog.at_level(logging.INFO, logger="aana.tasks.worker"):
        thread.start()
        try:
            # The sweep hands the silent task back, and the worker runs it.
            wait_until(lambda: app.get_task(lost.id).status == Status.COMPLETED, timeout=20)
            time.sleep(2 * 2.5)  # two more compaction attempts
        finally:
            worker.stop()
            thread.join(10)
    failures = [r for r in caplog.records if "compacting the task counts failed" in r.message]
    assert len(failures) == 1  # once per outage, not every round
    assert kept(db) == counted(db)


@pytest.mark.postgresql
def test_dashboard_counts__compact_first_and_count_when_compaction_fails(
    folding_db: DbSettings, app: AanaSDK, caplog: pytest.LogCaptureFixture
) -> None:
    db = folding_db
    api = FastAPI()
    api.include_router(tasks_router(app), prefix="/tasks")
    for n in range(5):
        app.defer("a", {"n": n})
    with TestClient(api) as client:
        assert client.get("/tasks/counts").json()["total"] == 5
        assert count_rows(db) == (1, 1)  # folded before counting
        refuse_compaction(db)
        for n in range(3):
            app.defer("a", {"n": n})
        with caplog.at_level(logging.WARNING, logger="aana.api"):
            assert client.get("/tasks/counts").json()["total"] == 8
            assert client.get("/tasks/").json()["total"] == 8
    # Logged once by this router, not at every request.
    assert len([r for r in caplog.records if "compacting" in r.message]) == 1


def test_worker__compacts_the_counts_while_it_runs(db: DbSettings, app: AanaSDK) -> None:
    @app.task("noop")
    def noop(data: Any) -> None:
        return None

    ids = [app.defer("noop", {"n": n}) for n in range(20)]
    rows, pairs = count_rows(db)
    if db.datastore_type == "postgresql":
        assert rows == 20 > pairs
    worker = Worker(app, WorkerOptions(concurrency=2, poll_interval=0.05, heartbeat_timeout=1))
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        wait_until(lambda: all(app.get_task(i).status == Status.COMPLETED for i in ids))
        if db.datastore_type == "postgresql":
            # Its claims and settles added rows; its maintenance folds them.
            wait_until(lambda: count_rows(db) == (1, 1), describe=lambda: str(count_rows(db)))
    finally:
        worker.stop()
        thread.join(10)
    assert kept(db) == counted(db) == {"noop": {"completed": 20}}


@BOTH_BACKENDS
def test_migration__counts_the_tasks_already_stored_and_goes_back(empty_db: DbSettings) -> None:
    settings = Settings(db_config=empty_db)
    op.run_alembic_migrations(settings)
    op.downgrade(settings, "0005_dashboard_indexes")
    with empty_db.get_engine().connect() as connection:
        assert not inspect(connection).has_table("task_counts")
    # ... and its triggers are gone with it: these inserts would fail without the table.
    for n, status in enumerate(["created", "created", "failed", "completed"]):
        execute(
            empty_db,
            "INSERT INTO tasks (id, endpoint, data, status, priority, progress, num_retries, "
            "cancel_requested, created_at, updated_at, scheduled_at) VALUES "
            "(:id, :endpoint, '{}', :status, 0, 0, 0, false, "
            "CURRENT_TIMESTAMP, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)",
            id=f"00000000-0000-0000-0000-00000000000{n}",
            endpoint="e",
            status=status,
        )
    op.run_alembic_migrations(settings)
    assert kept(empty_db) == counted(empty_db) == {"e": {"created": 2, "failed": 1, "completed": 1}}
    execute(empty_db, "UPDATE tasks SET status = 'running' WHERE status = 'created'")
    assert kept(empty_db) == counted(empty_db)
    assert op.compare_with_models(settings) == []
    assert count_triggers(empty_db) == {"inserted", "updated", "deleted"} | (
        {"truncated"} if empty_db.datastore_type == "postgresql" else set()
    )


def count_triggers(db: DbSettings) -> set[str]:
    """The count triggers on tasks (a batch migration of tasks on SQLite would drop them)."""
    sql = (
        "SELECT tgname FROM pg_trigger WHERE tgrelid = 'tasks'::regclass"
        if db.datastore_type == "postgresql"
        else "SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'tasks'"
    )
    with db.get_engine().connect() as connection:
        names = connection.scalars(text(sql))
        return {name.removeprefix("tasks_count_") for name in names if "count" in name}
