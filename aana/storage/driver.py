"""Statements on the driver's own connection: the task queue's hot path.

Through SQLAlchemy's ``Connection``, a one-row statement costs several times what the
driver itself takes (cache keys, execution contexts, result set-up), and the queue runs
thousands of them a second. Here a Core statement is compiled once per dialect, its
parameters and results are converted by their column types as SQLAlchemy would, and it
runs on a pooled driver connection: alone, committed by itself (one statement is an
atomic transaction on both backends, and needs no BEGIN/COMMIT round trips), or with
others in one transaction. Driver errors are raised as SQLAlchemy raises them, so
``aana.storage.errors.translate_errors`` turns them into aana's exceptions as usual.
"""

from __future__ import annotations

import os
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Dialect, Engine, event
from sqlalchemy.exc import DBAPIError, StatementError
from sqlalchemy.pool import PoolProxiedConnection
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler

from aana.storage import dialects
from aana.storage.engine import connection_error

Processor = Callable[[Any], Any]


class Prepared:
    """A Core statement compiled for one dialect, with its parameter and result conversions.

    Parameters are given by the names of the statement's ``bindparam`` objects; values
    bound in the statement itself (constants) are filled in. The statement must not use
    "expanding" parameters (``IN`` with a list): their SQL depends on each call's values.
    """

    def __init__(self, statement: ClauseElement, dialect: Dialect) -> None:
        compiled = statement.compile(dialect=dialect)
        assert isinstance(compiled, SQLCompiler)
        self.sql = compiled.string
        binds = {name: bind for bind, name in compiled.bind_names.items()}
        if any(bind.expanding for bind in binds.values()):
            raise ValueError("statements on the driver cannot take expanding (IN) parameters")
        self._keys = {name: bind.key for name, bind in binds.items() if bind.required}
        self._constants = {
            name: bind.effective_value for name, bind in binds.items() if not bind.required
        }
        self._convert: dict[str, Processor] = {}
        for name, bind in binds.items():
            process = bind.type.dialect_impl(dialect).bind_processor(dialect)
            if process is not None:
                self._convert[name] = process
        self._order: list[str] | None = (
            list(compiled.positiontup or ()) if compiled.positional else None
        )
        self._dialect = dialect
        self._columns = list(getattr(statement, "exported_columns", ()))
        self.returns_rows = bool(self._columns)
        self._results: list[tuple[int, Processor]] | None = None

    def parameters(self, values: Mapping[str, Any]) -> dict[str, Any] | tuple[Any, ...]:
        """The driver's parameters for these values (by ``bindparam`` key)."""
        merged = dict(self._constants)
        for name, key in self._keys.items():
            merged[name] = values[key]
        for name, process in self._convert.items():
            merged[name] = process(merged[name])
        if self._order is None:
            return merged
        return tuple(merged[name] for name in self._order)

    def convert_rows(self, rows: Sequence[Sequence[Any]], cursor: Any) -> list[tuple[Any, ...]]:
        """Result rows with each value converted by its column's type.

        Some conversions depend on the type the driver reports (the cursor's
        ``description``), so they are chosen on the first result.
        """
        if self._results is None:
            self._results = []
            description = cursor.description
            for index, column in enumerate(self._columns):
                impl = column.type.dialect_impl(self._dialect)
                process = impl.result_processor(self._dialect, description[index][1])
                if process is not None:
                    self._results.append((index, process))
        if not self._results:
            return [tuple(row) for row in rows]
        converted = []
        for row in rows:
            values = list(row)
            for index, process in self._results:
                values[index] = process(values[index])
            converted.append(tuple(values))
        return converted


_prepared: dict[tuple[int, int], tuple[ClauseElement, Dialect, Prepared]] = {}
_prepared_lock = threading.Lock()
_MAX_PREPARED = 512


def prepare(statement: ClauseElement, dialect: Dialect) -> Prepared:
    """``statement`` compiled for ``dialect``, once: pass the same statement object each time.

    Statements are remembered by identity (build them once, e.g. in a cached function);
    the cache holds at most a few hundred and is cleared when full.
    """
    key = (id(statement), id(dialect))
    entry = _prepared.get(key)
    if entry is not None and entry[0] is statement and entry[1] is dialect:
        return entry[2]
    prepared = Prepared(statement, dialect)
    with _prepared_lock:
        if len(_prepared) >= _MAX_PREPARED:
            _prepared.clear()
        # The statement and dialect are kept with it, so their ids cannot be reused.
        _prepared[key] = (statement, dialect, prepared)
    return prepared


_CURSOR = "aana_driver_cursor"
"""Key of a driver connection's own cursor in its pool record's ``info``."""


class DriverConnection:
    """A pooled driver connection that runs prepared Core statements.

    The statements run on one cursor kept with the driver connection for its lifetime:
    a new cursor per statement costs psycopg more than the statement's own work (it
    sets up the conversion of every column of the result again).
    """

    def __init__(
        self, pooled: PoolProxiedConnection, dialect: Dialect, own_cursor: bool = False
    ) -> None:
        """Wrap ``pooled``.

        Args:
            pooled: The connection, from the engine's pool.
            dialect: The engine's dialect.
            own_cursor: Keep the cursor here, not in the connection's pool record (a
                connection detached from the pool has none).

        """
        self._pooled = pooled
        self.dialect = dialect
        dbapi_connection: Any = pooled.dbapi_connection
        self.dbapi_connection = dbapi_connection
        self._driver_error: type[Exception] = dialect.loaded_dbapi.Error
        self.opened = time.monotonic()
        if own_cursor:
            self._cursor: Any = dialects.new_cursor(dbapi_connection, dialect)
            return
        cursor = pooled.info.get(_CURSOR)
        if cursor is None or cursor.connection is not dbapi_connection:
            cursor = pooled.info[_CURSOR] = dialects.new_cursor(dbapi_connection, dialect)
        self._cursor = cursor

    @property
    def is_valid(self) -> bool:
        """Whether the connection is still usable (not invalidated after an error)."""
        return self._pooled.is_valid

    def close(self) -> None:
        """Give the connection back to the pool (or close it, if detached from the pool)."""
        if self._pooled.dbapi_connection is not None:
            self._pooled.close()

    def execute(
        self, statement: ClauseElement, values: Mapping[str, Any] | None = None
    ) -> list[tuple[Any, ...]]:
        """Run ``statement`` once; returns its rows (none for a statement without any)."""
        prepared = prepare(statement, self.dialect)
        parameters = prepared.parameters(values or {})
        cursor = self._cursor
        try:
            cursor.execute(prepared.sql, parameters)
            if not prepared.returns_rows:
                return []
            rows = cursor.fetchall()
        except self._driver_error as error:
            raise self._raised(error, prepared.sql, parameters) from error
        return prepared.convert_rows(rows, cursor)

    def execute_many(self, statement: ClauseElement, values: Sequence[Mapping[str, Any]]) -> int:
        """Run ``statement`` once per item of ``values``; returns the rows changed in all."""
        if not values:
            return 0
        prepared = prepare(statement, self.dialect)
        parameters = [prepared.parameters(item) for item in values]
        try:
            self._cursor.executemany(prepared.sql, parameters)
            return int(self._cursor.rowcount)
        except self._driver_error as error:
            raise self._raised(error, prepared.sql, parameters) from error

    def begin(self) -> None:
        """Begin a write transaction (see ``aana.storage.dialects.begin``)."""
        try:
            dialects.begin(self._cursor, self.dialect)
        except self._driver_error as error:
            raise self._raised(error, "BEGIN", None) from error

    def commit(self) -> None:
        """Commit the transaction."""
        try:
            self.dbapi_connection.commit()
        except self._driver_error as error:
            raise self._raised(error, "COMMIT", None) from error

    def _raised(self, error: Any, sql: str, parameters: Any) -> StatementError:
        """The driver's error as SQLAlchemy raises it: an IntegrityError, ... ."""
        if self.dialect.is_disconnect(error, self.dbapi_connection, None):
            self._pooled.invalidate(error)  # the pool replaces it
        raised: StatementError = DBAPIError.instance(
            sql, parameters, error, self._driver_error, dialect=self.dialect
        )
        return raised


def _checkout(engine: Engine) -> PoolProxiedConnection:
    try:
        return engine.raw_connection()
    except engine.dialect.loaded_dbapi.Error as error:
        raise connection_error(engine.url, error) from error


class _Autocommit:
    """Driver connections of one engine kept in autocommit, for one-statement writes.

    Checking a connection out of SQLAlchemy's pool, switching it to autocommit and back,
    and resetting it on return cost more than a one-row statement itself; these
    connections skip all of that. They come from the engine (configured as any other),
    are then detached from its pool, and number at most the pool's size; when all are in
    use, a statement takes a connection from the pool as before. Like pooled ones, they
    are replaced after ``pool_recycle`` seconds; they are closed when the engine is
    disposed; after a fork the child opens its own.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        size = getattr(engine.pool, "size", None)
        self.limit: int = size() if callable(size) else 5
        self.recycle: float = getattr(engine.pool, "_recycle", -1)
        self._idle: list[DriverConnection] = []
        self._open = 0
        self._lock = threading.Lock()
        self._pid = os.getpid()

    def take(self) -> DriverConnection | None:
        """An idle connection, a new one, or None when ``limit`` are in use."""
        with self._lock:
            if self._pid != os.getpid():
                # Forked: the parent's connections are the parent's. Keep them from
                # being closed here (that would end the parent's sessions), open anew.
                _inherited.extend(self._idle)
                self._idle, self._open, self._pid = [], 0, os.getpid()
            if self._idle:
                return self._idle.pop()
            if self._open >= self.limit:
                return None
            self._open += 1
        try:
            pooled = _checkout(self.engine)
            pooled.detach()
            dialects.set_autocommit(pooled.dbapi_connection, self.engine.dialect, True)
        except BaseException:
            with self._lock:
                self._open -= 1
            raise
        return DriverConnection(pooled, self.engine.dialect, own_cursor=True)

    def give_back(self, connection: DriverConnection) -> None:
        """Keep a connection taken with ``take`` for the next statement (if still usable)."""
        expired = 0 <= self.recycle < time.monotonic() - connection.opened
        with self._lock:
            if connection.is_valid and not expired and self._pid == os.getpid():
                self._idle.append(connection)
                return
            self._open -= 1
        connection.close()

    def close_all(self) -> None:
        """Close the idle connections (the engine is being disposed)."""
        with self._lock:
            idle, self._idle = self._idle, []
            self._open -= len(idle)
        for connection in idle:
            connection.close()


_autocommit: weakref.WeakKeyDictionary[Engine, _Autocommit] = weakref.WeakKeyDictionary()
_autocommit_lock = threading.Lock()
_inherited: list[DriverConnection] = []


def _autocommit_of(engine: Engine) -> _Autocommit:
    connections = _autocommit.get(engine)
    if connections is None:
        with _autocommit_lock:
            connections = _autocommit.get(engine)
            if connections is None:
                connections = _autocommit[engine] = _Autocommit(engine)
                event.listen(engine, "engine_disposed", lambda _: connections.close_all())
    return connections


def execute_once(
    engine: Engine, statement: ClauseElement, values: Mapping[str, Any] | None = None
) -> list[tuple[Any, ...]]:
    """Run one statement, committed by itself (autocommit), on one of ``engine``'s connections.

    Returns:
        Its rows (none for a statement without any).

    """
    connections = _autocommit_of(engine)
    connection = connections.take()
    if connection is not None:
        try:
            return connection.execute(statement, values)
        finally:
            connections.give_back(connection)
    pooled = _checkout(engine)
    try:
        dialects.set_autocommit(pooled.dbapi_connection, engine.dialect, True)
        try:
            return DriverConnection(pooled, engine.dialect).execute(statement, values)
        finally:
            if pooled.is_valid:
                dialects.set_autocommit(pooled.dbapi_connection, engine.dialect, False)
    finally:
        pooled.close()


@contextmanager
def transaction(engine: Engine) -> Iterator[DriverConnection]:
    """A driver connection from ``engine``'s pool, in a transaction.

    The block's statements are committed when it ends and rolled back if it raises; on
    SQLite the transaction begins IMMEDIATE, taking the write lock up front.
    """
    pooled = _checkout(engine)
    try:
        connection = DriverConnection(pooled, engine.dialect)
        connection.begin()
        try:
            yield connection
        except BaseException:
            if pooled.is_valid:
                pooled.dbapi_connection.rollback()  # type: ignore[union-attr]
            raise
        connection.commit()
    finally:
        pooled.close()
