"""The queue's two hottest statements on PostgreSQL, run on psycopg's own API.

Deferring one task and a worker's claim, each one statement committed by itself. Run by
SQLAlchemy (the autocommit connection's checkout and reset, the statement's parameters
and rows), each cost about as much again as the statement (``benchmarks/bench_queue.py``:
single defer, idle worker latency). Here each runs on the driver connection of a
connection from the engine's pool, in autocommit:

- the insert of a task is SQL written for PostgreSQL, its values converted by the
  columns' own types (which check them);
- the claim is ``queue_sql.claim``, compiled once per kind of request by SQLAlchemy for
  the engine's dialect, its fixed parameters converted by their own types; a test
  compares both paths' claims and rows.

Errors are those of the SQLAlchemy path (``translate_errors``, ``DatabaseNotMigratedError``,
``DatabaseConnectionException``); a connection the server ended leaves the pool, and the
pool's other connections are replaced, as SQLAlchemy does on a disconnect.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg import sql
from sqlalchemy import Engine, Table
from sqlalchemy.exc import DBAPIError

from aana.storage import dialects, queue_sql
from aana.storage.compiled import CompiledStatements, ResultRows, bind_converter
from aana.storage.engine import connection_error
from aana.storage.errors import translate_errors
from aana.storage.tables import Status

_CONVERTED = {
    "endpoint": "endpoint",
    "priority": "priority",
    "user_id": "user_id",
    "at": "scheduled_at",
}
"""Parameters of a new task converted by the type of a column (which checks them)."""


@contextmanager
def _autocommit(engine: Engine, action: str) -> Iterator[psycopg.Connection[Any]]:
    """A driver connection from ``engine``'s pool, in autocommit while in use.

    As SQLAlchemy does: a connection found lost is invalidated and the pool's others
    are replaced (the server may have restarted), and a connection left by an
    interruption (``KeyboardInterrupt``, a timeout) is not reused.
    """
    with translate_errors(action):
        try:
            pooled = engine.raw_connection()
        except psycopg.Error as error:
            raise connection_error(engine.url, error) from error
        connection: psycopg.Connection[Any] = pooled.driver_connection  # type: ignore[assignment]
        previous = connection.autocommit
        try:
            connection.autocommit = True
            yield connection
        except psycopg.Error as error:
            lost = connection.broken or connection.closed
            if lost:
                pooled.invalidate(error)
                engine.dispose()  # its other connections may be as dead
            missing = dialects.missing_schema(error, None, ())
            if missing is not None:
                raise missing from error
            raise DBAPIError.instance(
                None, None, error, psycopg.Error, connection_invalidated=lost
            ) from error
        except BaseException:
            pooled.invalidate()  # interrupted mid-statement: its state is unknown
            raise
        finally:
            try:
                if pooled.is_valid and _idle(connection):
                    connection.autocommit = previous  # as the pool handed it out
                elif pooled.is_valid:
                    pooled.invalidate()
            finally:
                pooled.close()  # back to the pool (an invalidated one is closed)


def _idle(connection: psycopg.Connection[Any]) -> bool:
    status = connection.info.transaction_status
    return not connection.closed and status == psycopg.pq.TransactionStatus.IDLE


class DriverDefer:
    """``defer`` of one task on ``engine`` (PostgreSQL with psycopg).

    Call it with the parameters of ``aana.storage.queue_sql.new_task``: ``id``,
    ``endpoint``, ``data`` (JSON text), ``priority``, ``user``, ``at`` and ``delay``.
    The row is the one that statement stores (a test compares them column by column).
    """

    def __init__(self, engine: Engine, table: Table) -> None:
        self.engine = engine
        self._convert: dict[str, Callable[[Any], Any]] = {}
        for key, column in _CONVERTED.items():
            process = bind_converter(table.c[column].type, engine.dialect)
            if process is not None:
                self._convert[key] = process
        self._statement = sql.SQL(
            "INSERT INTO {table} (id, endpoint, data, status, priority, progress, num_retries,"
            " user_id, scheduled_at, cancel_requested) VALUES (%(id)s, %(endpoint)s,"
            " %(data)s::jsonb, {created}, %(priority)s, 0, 0, %(user_id)s,"
            " coalesce(%(at)s::timestamptz,"
            " statement_timestamp() + %(delay)s::float8 * interval '1 second'), false)"
        ).format(
            table=sql.Identifier(*((table.schema,) if table.schema else ()), table.name),
            created=sql.Literal(Status.CREATED.value),
        )

    def __call__(self, values: Mapping[str, Any]) -> None:
        """Store the task, committed by itself (one round trip)."""
        params = {
            "id": values["id"],
            "endpoint": values["endpoint"],
            "data": values["data"],
            "priority": values["priority"],
            "user_id": values["user"],
            "at": values["at"],
            "delay": values["delay"],
        }
        for key, process in self._convert.items():  # raises what the column types refuse
            params[key] = process(params[key])
        with _autocommit(self.engine, "deferring a task") as connection:
            connection.execute(self._statement, params)


class DriverClaim:
    """A worker's claim alone (``queue_sql.claim``, relaxed) on ``engine``'s driver.

    Returns the rows of ``queue_sql.JOB_COLUMNS`` of the tasks claimed, now RUNNING,
    each value as its column type gives it (``assigned_at`` in UTC).
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._compiled = CompiledStatements(engine.dialect)
        self._rows = ResultRows(queue_sql.JOB_COLUMNS, engine.dialect)

    def __call__(self, request: queue_sql.ClaimRequest) -> list[tuple[Any, ...]]:
        """Claim what ``request`` asks for, committed by itself (one round trip)."""
        compiled = self._compiled[queue_sql.claim(request, job=True, relaxed=True)]
        parameters = compiled.parameters(request.parameters())
        with _autocommit(self.engine, "claiming tasks") as connection:
            rows = connection.execute(compiled.sql, parameters).fetchall()
        return self._rows(rows)
