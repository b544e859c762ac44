"""A worker's turn on SQLite, run on the ``sqlite3`` module's own API.

A turn stores the results of finished attempts (``queue_sql.finish_many``) and claims
the next tasks (``queue_sql.claim``) in one ``BEGIN IMMEDIATE`` transaction. SQLite has
one writer at a time: the worker processes of a queue take turns at the write lock, so
the queue runs no faster than one turn holds it. Run by SQLAlchemy (each row's
parameters, the claim's rows, the transaction's events), a turn of ten tasks held the
lock 880 us, of which the statements took 360 (``benchmarks/bench_queue.py``, SQLite).

Here the statements are those SQLAlchemy compiles for the engine's dialect, compiled
once; their parameters are converted by the bound columns' own types, before the lock is
taken, and the claimed rows by the returned columns' types, after it is released. The
connection is one of the engine's pool (with its pragmas). A test compares the rows and
results of both paths.

Errors are those of the SQLAlchemy path (``translate_errors``, ``DatabaseNotMigratedError``,
``DatabaseConnectionException``); an interrupted turn's connection is not reused.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, cast

from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError

from aana.storage import dialects, queue_sql
from aana.storage.compiled import CompiledStatements, DriverStatement, ResultRows
from aana.storage.engine import connection_error
from aana.storage.errors import translate_errors
from aana.storage.tables import tasks


class DriverTurn:
    """A worker's turn on ``engine`` (SQLite with the ``sqlite3`` module).

    Called with the result rows of ``queue_sql.finish_many`` (named parameters) and what
    to claim; returns the rows of ``queue_sql.JOB_COLUMNS`` of the tasks claimed, now
    RUNNING, or None if an attempt no longer held its task: then nothing was written,
    and the caller takes the general path, which says which results were stored.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._table = tasks
        self._finish = DriverStatement(queue_sql.finish_many(), engine.dialect)
        self._claims = CompiledStatements(engine.dialect)
        self._rows = ResultRows(queue_sql.JOB_COLUMNS, engine.dialect)

    def __call__(
        self, results: Sequence[Mapping[str, Any]], request: queue_sql.ClaimRequest | None
    ) -> list[tuple[Any, ...]] | None:
        """Store ``results`` and claim what ``request`` asks for, in one transaction."""
        action = f"settling {len(results)} task(s) and claiming"
        claim: tuple[str, tuple[Any, ...] | dict[str, Any]] | None = None
        with translate_errors(action):
            try:
                rows = [self._finish.parameters(row) for row in results]
                if request is not None:
                    statement = self._claims[queue_sql.claim(request, job=True)]
                    claim = (statement.sql, statement.parameters(request.parameters()))
            except Exception as error:  # a value its column type refused, as SQLAlchemy says it
                raise DBAPIError.instance(self._finish.sql, None, error, sqlite3.Error) from error
        with self._immediate(action) as connection:
            if rows and connection.executemany(self._finish.sql, rows).rowcount != len(rows):
                connection.rollback()
                return None
            claimed = connection.execute(*claim).fetchall() if claim is not None else []
        return self._rows(claimed)

    @contextmanager
    def _immediate(self, action: str) -> Iterator[sqlite3.Connection]:
        """A driver connection from the pool, in a write transaction committed on exit."""
        with translate_errors(action):
            try:
                pooled = self.engine.raw_connection()
            except sqlite3.Error as error:  # the file cannot be opened
                raise connection_error(self.engine.url, error) from error
            connection = cast(sqlite3.Connection, pooled.driver_connection)
            try:
                connection.execute("BEGIN IMMEDIATE")
                try:
                    yield connection
                    connection.commit()  # a no-op if the body rolled back
                except BaseException:
                    connection.rollback()
                    raise
            except sqlite3.Error as error:
                missing = dialects.missing_schema(error, connection, (self._table,))
                if missing is not None:
                    raise missing from error
                raise DBAPIError.instance(None, None, error, sqlite3.Error) from error
            except BaseException:
                pooled.invalidate()  # interrupted mid-statement: its state is unknown
                raise
            finally:
                pooled.close()  # back to the pool (an invalidated one is closed)
