"""Statements on the driver's own connection: the task queue's hot path.

Through SQLAlchemy's ``Connection``, a one-row statement costs several times what the
driver itself takes (cache keys, execution contexts, result set-up), and the queue runs
thousands of them a second. Here a Core statement is compiled once per dialect, its
parameters and results are converted by their column types as SQLAlchemy would, and it
runs on one of the engine's driver connections: alone, committed by itself (one
statement is an atomic transaction on both backends, and needs no BEGIN/COMMIT round
trips; see ``execute_once``), or with others in one transaction (``transaction``).
Driver errors are raised as SQLAlchemy raises them, so
``aana.storage.errors.translate_errors`` turns them into aana's exceptions as usual.
"""

from __future__ import annotations

import os
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
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
        results = self._results
        if results is None:
            # Built aside and published whole: other threads may use it meanwhile.
            results = []
            description = cursor.description
            for index, column in enumerate(self._columns):
                impl = column.type.dialect_impl(self._dialect)
                process = impl.result_processor(self._dialect, description[index][1])
                if process is not None:
                    results.append((index, process))
            self._results = results
        if not results:
            return [tuple(row) for row in rows]
        converted = []
        for row in rows:
            values = list(row)
            for index, process in results:
                values[index] = process(values[index])
            converted.append(tuple(values))
        return converted


_PREPARED = "_aana_prepared"
"""Attribute of a dialect holding its statements compiled by ``prepare``: kept on the
dialect, not in a module-level mapping, which would keep the dialect alive (and through
its listeners, its engine)."""
_MAX_PREPARED = 512
_prepared_lock = threading.Lock()


def prepare(statement: ClauseElement, dialect: Dialect) -> Prepared:
    """``statement`` compiled for ``dialect``, once: pass the same statement object each time.

    Statements are remembered by identity (build them once, e.g. in a cached function);
    each dialect keeps at most a few hundred, and forgets them all when full.
    """
    compiled: dict[int, tuple[ClauseElement, Prepared]] | None = getattr(dialect, _PREPARED, None)
    if compiled is not None:
        entry = compiled.get(id(statement))
        if entry is not None and entry[0] is statement:
            return entry[1]
    prepared = Prepared(statement, dialect)
    with _prepared_lock:
        compiled = getattr(dialect, _PREPARED, None)
        if compiled is None or len(compiled) >= _MAX_PREPARED:
            compiled = {}
            setattr(dialect, _PREPARED, compiled)
        # The statement is kept with it, so its id cannot be reused meanwhile.
        compiled[id(statement)] = (statement, prepared)
    return prepared


def _parameters(prepared: Prepared, values: Mapping[str, Any]) -> Any:
    try:
        return prepared.parameters(values)
    except (TypeError, ValueError) as error:
        # As SQLAlchemy reports a value its column type refused.
        raise StatementError(str(error), prepared.sql, dict(values), error) from error


_CURSOR = "aana_driver_cursor"
"""Key of a driver connection's own cursor in its pool record's ``info``."""


class DriverConnection:
    """A pooled driver connection that runs prepared Core statements.

    The statements run on one cursor kept with the driver connection for its lifetime:
    a new cursor per statement costs psycopg more than the statement's own work (it
    sets up the conversion of every column of the result again).
    """

    def __init__(
        self,
        pooled: PoolProxiedConnection,
        dialect: Dialect,
        on_disconnect: Callable[[BaseException], None],
        own_cursor: bool = False,
    ) -> None:
        """Wrap ``pooled``.

        Args:
            pooled: The connection, from the engine's pool.
            dialect: The engine's dialect.
            on_disconnect: Called when the server is found gone, to discard the
                engine's other connections too (they are most likely gone as well).
            own_cursor: Keep the cursor here, not in the connection's pool record (a
                connection detached from the pool has none).

        """
        self._pooled = pooled
        self._on_disconnect = on_disconnect
        self.dialect = dialect
        dbapi_connection: Any = pooled.dbapi_connection
        self.dbapi_connection = dbapi_connection
        self._driver_error: type[Exception] = dialect.loaded_dbapi.Error
        self.opened = time.monotonic()
        self.generation = 0  # see _Autocommit
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
        elif self.dbapi_connection is not None:  # invalidated while detached: close it here
            with suppress(Exception):
                self.dbapi_connection.close()

    def execute(
        self, statement: ClauseElement, values: Mapping[str, Any] | None = None
    ) -> list[tuple[Any, ...]]:
        """Run ``statement`` once; returns its rows (none for a statement without any)."""
        prepared = prepare(statement, self.dialect)
        parameters = _parameters(prepared, values or {})
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
        parameters = [_parameters(prepared, item) for item in values]
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
            self._on_disconnect(error)
            self._pooled.invalidate(error)
        raised: StatementError = DBAPIError.instance(
            sql, parameters, error, self._driver_error, dialect=self.dialect
        )
        return raised


def _checkout(engine: Engine) -> PoolProxiedConnection:
    try:
        return engine.raw_connection()
    except engine.dialect.loaded_dbapi.Error as error:
        raise connection_error(engine.url, error) from error


def detached_connection(engine: Engine) -> PoolProxiedConnection:
    """A connection made by ``engine`` (configured as any other), then detached from its pool.

    For a connection kept a long time: it takes no slot of the pool, and ``close()``
    really closes it.
    """
    pooled = _checkout(engine)
    pooled.detach()
    return pooled


def _discarder(engine: Engine) -> Callable[[BaseException], None]:
    """What a connection of ``engine`` calls when it finds the server gone."""
    engine_ref = weakref.ref(engine)  # the connections must not keep the engine alive

    def discard(error: BaseException) -> None:
        engine = engine_ref()
        if engine is None:
            return
        # As SQLAlchemy does on a disconnect: every connection opened before now is
        # replaced when next used; the idle autocommit ones are closed.
        engine.pool._invalidate_time = time.time()
        autocommit: _Autocommit | None = getattr(engine, _AUTOCOMMIT, None)
        if autocommit is not None:
            autocommit.close_all()

    return discard


class _Autocommit:
    """Driver connections of one engine kept in autocommit, for one-statement writes.

    Checking a connection out of SQLAlchemy's pool, switching it to autocommit and back,
    and resetting it on return cost more than a one-row statement itself; these
    connections skip all of that. They come from the engine (configured as any other),
    are then detached from its pool, and number at most the pool's size; when all are in
    use, a statement takes a connection from the pool as before. Like pooled ones, they
    are replaced after ``pool_recycle`` seconds, and all of them when one finds the
    server gone; they are closed when the engine is disposed (those in use, when given
    back). A forked child leaves its parent's alone and opens its own.
    """

    def __init__(self, engine: Engine) -> None:
        size = getattr(engine.pool, "size", None)
        self.limit: int = size() if callable(size) else 5
        self.recycle: float = getattr(engine.pool, "_recycle", -1)
        self._idle: list[DriverConnection] = []
        self._open = 0
        self._generation = 0  # connections of an older generation are closed on return
        self._lock = threading.Lock()
        self.discard = _discarder(engine)  # built once: connections call it on a disconnect
        _all_autocommit.add(self)

    def take(self, engine: Engine) -> DriverConnection | None:
        """An idle connection, a new one, or None when ``limit`` are in use."""
        with self._lock:
            if self._idle:
                return self._idle.pop()
            if self._open >= self.limit:
                return None
            self._open += 1
            generation = self._generation
        pooled = None
        try:
            pooled = detached_connection(engine)
            dialects.set_autocommit(pooled.dbapi_connection, engine.dialect, True)
            connection = DriverConnection(pooled, engine.dialect, self.discard, own_cursor=True)
        except BaseException as error:
            with self._lock:
                self._open -= 1
            if pooled is not None:
                pooled.close()  # detached: really closed
            if isinstance(error, engine.dialect.loaded_dbapi.Error):
                raise connection_error(engine.url, error) from error
            raise
        connection.generation = generation
        return connection

    def give_back(self, connection: DriverConnection) -> None:
        """Keep a connection taken with ``take`` for the next statement (if still usable)."""
        expired = 0 <= self.recycle < time.monotonic() - connection.opened
        with self._lock:
            keep = connection.is_valid and connection.generation == self._generation
            if keep and not expired:
                self._idle.append(connection)
                return
            self._open -= 1
        connection.close()

    def close_all(self) -> None:
        """Close the idle connections, and the busy ones when they are given back."""
        with self._lock:
            idle, self._idle = self._idle, []
            self._open -= len(idle)
            self._generation += 1
        for connection in idle:
            connection.close()

    def forget_after_fork(self) -> None:
        """In a forked child: the parent's connections are the parent's to use and close.

        They are kept referenced, never closed here: closing them would end the
        parent's sessions on the server.
        """
        self._lock = threading.Lock()
        _inherited.extend(self._idle)
        self._idle, self._open = [], 0
        self._generation += 1


_AUTOCOMMIT = "_aana_autocommit"
"""Attribute of an engine holding its ``_Autocommit``: kept on the engine, not in a
mapping keyed by it, as the connections lead back to the engine (through the pool's
listeners) and would keep it alive."""
_autocommit_lock = threading.Lock()
_all_autocommit: weakref.WeakSet[_Autocommit] = weakref.WeakSet()
_inherited: list[DriverConnection] = []


def _after_fork_in_child() -> None:
    global _autocommit_lock, _prepared_lock
    _autocommit_lock = threading.Lock()
    _prepared_lock = threading.Lock()
    for autocommit in list(_all_autocommit):
        autocommit.forget_after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)


def _autocommit_of(engine: Engine) -> _Autocommit:
    connections: _Autocommit | None = getattr(engine, _AUTOCOMMIT, None)
    if connections is None:
        with _autocommit_lock:
            connections = getattr(engine, _AUTOCOMMIT, None)
            if connections is None:
                connections = _Autocommit(engine)
                setattr(engine, _AUTOCOMMIT, connections)
                close_all = connections.close_all
                event.listen(engine, "engine_disposed", lambda _connection: close_all())
    return connections


def execute_once(
    engine: Engine, statement: ClauseElement, values: Mapping[str, Any] | None = None
) -> list[tuple[Any, ...]]:
    """Run one statement, committed by itself (autocommit), on one of ``engine``'s connections.

    Returns:
        Its rows (none for a statement without any).

    """
    connections = _autocommit_of(engine)
    connection = connections.take(engine)
    if connection is not None:
        try:
            return connection.execute(statement, values)
        finally:
            connections.give_back(connection)
    pooled = _checkout(engine)
    try:
        dialects.set_autocommit(pooled.dbapi_connection, engine.dialect, True)
        try:
            driver = DriverConnection(pooled, engine.dialect, connections.discard)
            return driver.execute(statement, values)
        finally:
            _end_autocommit(pooled, engine.dialect)
    finally:
        pooled.close()


def _end_autocommit(pooled: PoolProxiedConnection, dialect: Dialect) -> None:
    """Back to transactions before the connection returns to the pool (or discard it)."""
    if not pooled.is_valid:
        return
    try:
        dialects.set_autocommit(pooled.dbapi_connection, dialect, False)
    except Exception:
        pooled.invalidate()  # never back in the pool in autocommit


@contextmanager
def transaction(engine: Engine) -> Iterator[DriverConnection]:
    """A driver connection from ``engine``'s pool, in a transaction.

    The block's statements are committed when it ends and rolled back if it raises; on
    SQLite the transaction begins IMMEDIATE, taking the write lock up front.
    """
    discard = _autocommit_of(engine).discard
    pooled = _checkout(engine)
    try:
        connection = DriverConnection(pooled, engine.dialect, discard)
        connection.begin()
        try:
            yield connection
        except BaseException:
            _roll_back(pooled)
            raise
        connection.commit()
    finally:
        pooled.close()


def _roll_back(pooled: PoolProxiedConnection) -> None:
    """Roll back after a failure; a connection that cannot is discarded, not reused."""
    if not pooled.is_valid:
        return
    try:
        pooled.dbapi_connection.rollback()  # type: ignore[union-attr]
    except Exception:
        pooled.invalidate()
