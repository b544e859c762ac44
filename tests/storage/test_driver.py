"""Statements run on the driver's connection (the task queue's hot path)."""

import datetime
import os
import uuid

import psycopg
import pytest
from sqlalchemy import func, select

from aana.configs.db import DbSettings
from aana.exceptions.db import ConstraintViolationException, DatabaseConnectionException
from aana.storage import driver, queue_sql
from aana.storage.errors import translate_errors
from aana.storage.models import Status, TaskEntity


def new_task(task_id: uuid.UUID, data: str = '{"n": 1}') -> dict[str, object]:
    return {"id": task_id, "endpoint": "ep", "data": data, "priority": 3, "user": "u1"}


def count_tasks(db: DbSettings) -> int:
    with db.get_engine().connect() as connection:
        return int(connection.scalar(select(func.count()).select_from(TaskEntity)) or 0)


def test_execute_once__values_come_back_as_the_column_types_make_them(db):
    engine = db.get_engine()
    task_id = uuid.uuid4()
    driver.execute_once(engine, queue_sql.new_task(), new_task(task_id))
    statement, params = queue_sql.set_status(task_id, Status.RUNNING, 0.5, None, False)
    [row] = driver.execute_once(engine, statement, params)
    task = dict(zip([column.key for column in queue_sql.TASK_COLUMNS], row, strict=True))
    assert task["id"] == task_id and task["data"] == {"n": 1}
    assert task["status"] is Status.RUNNING and task["progress"] == 0.5
    assert task["created_at"].tzinfo == datetime.UTC
    assert (task["priority"], task["user_id"], task["completed_at"]) == (3, "u1", None)


def test_execute_once__constraint_violation_is_translated_nothing_written(db):
    engine = db.get_engine()
    task_id = uuid.uuid4()
    driver.execute_once(engine, queue_sql.new_task(), new_task(task_id))
    with pytest.raises(ConstraintViolationException), translate_errors("deferring"):
        driver.execute_once(engine, queue_sql.new_task(), new_task(task_id))
    assert count_tasks(db) == 1


def test_transaction__an_error_rolls_back_every_statement(db):
    engine = db.get_engine()
    twice = new_task(uuid.uuid4())
    with (
        pytest.raises(ConstraintViolationException),
        translate_errors("deferring"),
        driver.transaction(engine) as connection,
    ):
        connection.execute(queue_sql.new_task(), new_task(uuid.uuid4()))
        connection.execute(queue_sql.new_task(), twice)
        connection.execute(queue_sql.new_task(), twice)
    assert count_tasks(db) == 0
    # The connection went back to the pool usable.
    with driver.transaction(engine) as connection:
        connection.execute(queue_sql.new_task(), new_task(uuid.uuid4()))
    assert count_tasks(db) == 1


@pytest.mark.postgresql
def test_execute_once__unreachable_server_names_host_not_password():
    settings = DbSettings(
        datastore_type="postgresql",
        datastore_config={
            "host": "127.0.0.1",
            "port": 1,
            "user": "postgres",
            "password": "s3cret-pw",
            "database": "x",
        },
        connection_timeout=2,
    )
    with pytest.raises(DatabaseConnectionException) as caught:
        driver.execute_once(settings.get_engine(), queue_sql.new_task(), new_task(uuid.uuid4()))
    assert "127.0.0.1:1" in str(caught.value)
    assert "s3cret-pw" not in str(caught.value) + repr(caught.value.__cause__)


@pytest.mark.postgresql
@pytest.mark.parametrize("db", ["postgresql"], indirect=True)
def test_insert_into_tasks__notifies_listening_workers(db):
    from aana.storage.dialects import TASKS_CHANNEL
    from aana.storage.repository import TaskRepository
    from aana.storage.session import get_session

    config = db.datastore_config
    with psycopg.connect(
        host=config["host"],
        port=config["port"],
        user=config["user"],
        dbname=config["database"],
        autocommit=True,
    ) as listener:
        listener.execute(f"LISTEN {TASKS_CHANNEL}")
        with get_session() as session:
            TaskRepository(session).save("ep", {})  # the ORM's insert, not the queue's
        assert [n.channel for n in listener.notifies(timeout=5, stop_after=1)] == [TASKS_CHANNEL]


def test_execute_once__a_forked_child_leaves_the_parents_connections_alone(db):
    engine = db.get_engine()
    driver.execute_once(engine, queue_sql.new_task(), new_task(uuid.uuid4()))
    child = os.fork()
    if child == 0:  # the child opens its own connection, and exits without closing any
        try:
            driver.execute_once(engine, queue_sql.new_task(), new_task(uuid.uuid4()))
        finally:
            os._exit(0)
    assert os.waitpid(child, 0)[1] == 0
    driver.execute_once(engine, queue_sql.new_task(), new_task(uuid.uuid4()))
    assert count_tasks(db) == 3


def test_execute_once__disposing_the_engine_closes_its_connections(db):
    engine = db.get_engine()
    driver.execute_once(engine, queue_sql.new_task(), new_task(uuid.uuid4()))
    engine.dispose()
    # Usable again afterwards, like the engine itself.
    driver.execute_once(engine, queue_sql.new_task(), new_task(uuid.uuid4()))
    assert count_tasks(db) == 2


def test_execute_once__connections_are_replaced_after_pool_recycle(db):
    settings = db.model_copy(update={"pool_recycle": 0})
    engine = settings.get_engine()
    try:
        for _ in range(3):
            driver.execute_once(engine, queue_sql.new_task(), new_task(uuid.uuid4()))
        assert driver._autocommit_of(engine)._idle == []  # each one closed after use
    finally:
        engine.dispose()
    assert count_tasks(db) == 3


def test_execute_once__a_childs_dispose_leaves_the_parents_connections_open(db):
    engine = db.get_engine()
    driver.execute_once(engine, queue_sql.new_task(), new_task(uuid.uuid4()))
    child = os.fork()
    if child == 0:
        try:
            engine.dispose(close=False)  # what SQLAlchemy advises a forked child to do
        finally:
            os._exit(0)
    assert os.waitpid(child, 0)[1] == 0
    driver.execute_once(engine, queue_sql.new_task(), new_task(uuid.uuid4()))
    assert count_tasks(db) == 2


@pytest.mark.postgresql
@pytest.mark.parametrize("db", ["postgresql"], indirect=True)
def test_execute_once__after_the_server_drops_connections_one_statement_fails(db):
    from aana.exceptions.db import DatabaseException

    engine = db.get_engine()
    with driver.transaction(engine), driver.transaction(engine):
        pass  # two pooled connections
    for _ in range(3):
        driver.execute_once(engine, queue_sql.new_task(), new_task(uuid.uuid4()))
    config = db.datastore_config
    with psycopg.connect(
        host=config["host"], port=config["port"], user=config["user"], dbname="postgres"
    ) as admin:
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
            (config["database"],),
        )
    failures = 0
    for _ in range(4):
        try:
            with translate_errors("deferring"):
                driver.execute_once(engine, queue_sql.new_task(), new_task(uuid.uuid4()))
        except DatabaseException:
            failures += 1
    assert failures == 1


def test_execute_once__a_connection_in_use_at_dispose_is_closed_when_given_back(db):
    engine = db.get_engine()
    connections = driver._autocommit_of(engine)
    connection = connections.take(engine)
    assert connection is not None
    engine.dispose()
    connections.give_back(connection)
    assert connections._idle == [] and connections._open == 0


def test_execute_once__leaves_nothing_that_keeps_a_dropped_engine_alive(db):
    import gc
    import weakref

    settings = db.model_copy()  # its own engine
    engine = settings.get_engine()
    driver.execute_once(engine, queue_sql.new_task(), new_task(uuid.uuid4()))
    engine.dispose()
    dropped = weakref.ref(engine)
    del engine, settings
    gc.collect()
    assert dropped() is None
