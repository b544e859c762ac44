"""Everything that differs between SQLite and PostgreSQL, in one place.

Repositories and the queue build portable SQLAlchemy statements; this module supplies
the pieces that must be rendered or configured per dialect: the database clock, engine
options and connection setup, and reading constraint violations from driver errors.
"""

from __future__ import annotations

import sqlite3
import traceback
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import (
    Column,
    Connection,
    Dialect,
    Engine,
    Insert,
    String,
    Table,
    event,
    func,
    literal,
    select,
)
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.functions import FunctionElement

from aana.exceptions.config import MigrationsThroughPoolerError
from aana.exceptions.db import DatabaseNotMigratedError
from aana.storage import pooling
from aana.storage.types import JsonType, UtcDateTime

try:
    import psycopg
    import psycopg.errors
    from psycopg import sql as pg_sql
except ImportError:  # SQLite only: the postgresql extra is not installed
    HAS_PSYCOPG = False
else:
    HAS_PSYCOPG = True

SQLITE_BEGIN_OPTION = "aana_sqlite_begin"
"""Execution option naming how a SQLite transaction begins (``"IMMEDIATE"`` takes the
write lock up front, so a read-then-write transaction cannot fail half-way)."""

# SQLite keeps text timestamps; this format matches what UtcDateTime binds
# (6-digit microseconds), so stored and computed values compare correctly as text.
_SQLITE_NOW_FORMAT = "%Y-%m-%d %H:%M:%f000"


class utcnow(FunctionElement[Any]):
    """The database clock in UTC, optionally shifted by ``seconds`` (may be negative)."""

    type = UtcDateTime()
    inherit_cache = True
    name = "utcnow"

    def __init__(self, seconds: float | ColumnElement[Any] | None = None) -> None:
        if seconds is None:
            super().__init__()
        elif isinstance(seconds, ColumnElement):
            super().__init__(seconds)
        else:
            super().__init__(literal(float(seconds)))


@compiles(utcnow, "postgresql")
def _utcnow_postgresql(element: utcnow, compiler: SQLCompiler, **kw: Any) -> str:
    # The statement's clock, not the transaction's start (now()): a claim or heartbeat
    # sent late in a long transaction is not born already expired. One value for the
    # whole statement, as SQLite's 'now' is: rows inserted together share it, and a new
    # row's created_at and updated_at are equal.
    if not element.clauses.clauses:
        return "statement_timestamp()"
    shift = compiler.process(element.clauses, **kw)
    return f"(statement_timestamp() + {shift} * interval '1 second')"


@compiles(utcnow, "sqlite")
def _utcnow_sqlite(element: utcnow, compiler: SQLCompiler, **kw: Any) -> str:
    if not element.clauses.clauses:
        return f"strftime('{_SQLITE_NOW_FORMAT}', 'now')"
    shift = compiler.process(element.clauses, **kw)
    return f"strftime('{_SQLITE_NOW_FORMAT}', 'now', ({shift}) || ' seconds')"


class smallest(FunctionElement[Any]):
    """The smallest of its arguments: ``least`` on PostgreSQL, ``min`` on SQLite."""

    inherit_cache = True
    name = "smallest"


@compiles(smallest, "postgresql")
def _smallest_postgresql(element: smallest, compiler: SQLCompiler, **kw: Any) -> str:
    return f"least({compiler.process(element.clauses, **kw)})"


@compiles(smallest, "sqlite")
def _smallest_sqlite(element: smallest, compiler: SQLCompiler, **kw: Any) -> str:
    return f"min({compiler.process(element.clauses, **kw)})"


class minute_of(FunctionElement[Any]):
    """A UTC timestamp's minute as text, ``YYYY-MM-DD HH:MM``: a key to group rows by."""

    type = String()
    inherit_cache = True
    name = "minute_of"


@compiles(minute_of, "postgresql")
def _minute_of_postgresql(element: minute_of, compiler: SQLCompiler, **kw: Any) -> str:
    column = compiler.process(element.clauses, **kw)
    return f"to_char({column} AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI')"


@compiles(minute_of, "sqlite")
def _minute_of_sqlite(element: minute_of, compiler: SQLCompiler, **kw: Any) -> str:
    # Stored as ISO text in UTC (see _SQLITE_NOW_FORMAT): the minute is its first 16 characters.
    return f"substr({compiler.process(element.clauses, **kw)}, 1, 16)"


class random_fraction(FunctionElement[Any]):
    """A random number in [0, 1), drawn by the database for each row."""

    inherit_cache = True
    name = "random_fraction"


@compiles(random_fraction, "postgresql")
def _random_fraction_postgresql(element: random_fraction, compiler: SQLCompiler, **kw: Any) -> str:
    return "random()"


@compiles(random_fraction, "sqlite")
def _random_fraction_sqlite(element: random_fraction, compiler: SQLCompiler, **kw: Any) -> str:
    # random() is a signed 64-bit integer there.
    return "((abs(random()) % 1000000) / 1000000.0)"


def insert_unless_conflicting(
    dialect: Dialect, table: Any, index_elements: Sequence[Any], index_where: Any
) -> Insert:
    """``INSERT ... ON CONFLICT (...) WHERE ... DO NOTHING`` for a partial unique index.

    Both backends spell it the same way in SQL, but SQLAlchemy builds it with each
    dialect's own ``insert``. A row that conflicts is not inserted and no error is
    raised; PostgreSQL first waits for a concurrent insert of the same key to commit.
    """
    if dialect.name == "postgresql":
        return postgresql_insert(table).on_conflict_do_nothing(
            index_elements=index_elements, index_where=index_where
        )
    return sqlite_insert(table).on_conflict_do_nothing(
        index_elements=index_elements, index_where=index_where
    )


class likely(FunctionElement[Any]):
    """A condition most rows meet: the planner should not look rows up by it.

    SQLite's planner, without statistics, assumes any indexed condition is selective:
    it would find the claimable tasks through the status index and sort all of them,
    instead of reading the claim-order index (whose own condition this one implies)
    for the first few. ``likelihood(..., 0.9)`` corrects that. Elsewhere the condition
    is rendered as it is.
    """

    inherit_cache = True
    name = "likely"


@compiles(likely)
def _likely(element: likely, compiler: SQLCompiler, **kw: Any) -> str:
    return compiler.process(element.clauses, **kw)


@compiles(likely, "sqlite")
def _likely_sqlite(element: likely, compiler: SQLCompiler, **kw: Any) -> str:
    return f"likelihood({compiler.process(element.clauses, **kw)}, 0.9)"


class json_text(FunctionElement[Any]):
    """JSON given as text (already encoded), stored in a JSON column."""

    type = JsonType
    inherit_cache = True
    name = "json_text"


@compiles(json_text, "postgresql")
def _json_text_postgresql(element: json_text, compiler: SQLCompiler, **kw: Any) -> str:
    return f"CAST({compiler.process(element.clauses, **kw)} AS JSONB)"


@compiles(json_text, "sqlite")
def _json_text_sqlite(element: json_text, compiler: SQLCompiler, **kw: Any) -> str:
    return compiler.process(element.clauses, **kw)


def sqlite_engine_options(path: str, connection_timeout: int) -> dict[str, Any]:
    """``create_engine`` arguments for a SQLite file."""
    return {
        "url": URL.create("sqlite", database=path),
        "connect_args": {"timeout": connection_timeout, "check_same_thread": False},
    }


def postgresql_engine_options(
    config: Mapping[str, Any],
    connection_timeout: int,
    query_timeout: int,
    idle_in_transaction_timeout: int = 0,
) -> dict[str, Any]:
    """``create_engine`` arguments for PostgreSQL through psycopg 3.

    Connections notice a dead peer within seconds, not the operating system's two
    hours: TCP keepalives probe an idle connection after 5 s (every 2 s, 3 times), and
    data the server has not acknowledged for ``connection_timeout`` seconds fails the
    call. With ``idle_in_transaction_timeout`` (seconds) the server ends a session whose
    transaction sits idle that long (a client gone mid-transaction releases its locks).
    """
    url = URL.create(
        "postgresql+psycopg",
        username=config["user"],
        password=config.get("password"),  # None: libpq finds it (PGPASSWORD, .pgpass)
        host=config["host"],
        port=int(config["port"]),
        database=config["database"],
    )
    options = f"-c timezone=UTC -c statement_timeout={int(query_timeout) * 1000}"
    if idle_in_transaction_timeout:
        options += f" -c idle_in_transaction_session_timeout={idle_in_transaction_timeout * 1000}"
    return {
        "url": url,
        "connect_args": {
            "connect_timeout": connection_timeout,
            "options": options,
            "application_name": "aana",
            "keepalives": 1,
            "keepalives_idle": 5,
            "keepalives_interval": 2,
            "keepalives_count": 3,
            "tcp_user_timeout": connection_timeout * 1000,
        },
    }


def describe_database(url: URL) -> str:
    """Where a URL leads, for messages: never the password."""
    if url.get_backend_name() == "sqlite":
        return f"SQLite database {url.database!r}"
    return f"PostgreSQL at {url.host}:{url.port} (database {url.database!r})"


def async_url(url: URL) -> URL:
    """The URL of the asyncio driver for the same database."""
    if url.get_backend_name() == "sqlite":
        return url.set(drivername="sqlite+aiosqlite")
    return url  # psycopg 3 serves both; SQLAlchemy picks its async dialect


def configure_sqlite_engine(engine: Engine, busy_timeout_ms: int) -> None:
    """Per-connection pragmas and explicit transaction control for SQLite."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: sqlite3.Connection, _record: Any) -> None:
        # Take transaction control from the sqlite3 module so BEGIN is ours to write.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        # WAL + NORMAL survives application crashes; only an OS crash or power loss can
        # lose the last commits, never corrupt the file.
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        mode = connection.get_execution_options().get(SQLITE_BEGIN_OPTION, "DEFERRED")
        if mode is None:
            return  # autocommit: each statement is a transaction of its own
        if mode not in ("DEFERRED", "IMMEDIATE", "EXCLUSIVE"):
            raise ValueError(f"unknown SQLite transaction mode {mode!r}")
        connection.exec_driver_sql(f"BEGIN {mode}")


def release_failed_statement(dialect: Dialect, driver_error: BaseException | None) -> None:
    """Let go at once of the driver's cursor of a statement that failed (SQLite, asyncio).

    SQLAlchemy 2.0's aiosqlite adapter does not close the cursor of a statement that
    failed: it stays in the frames of the error's traceback. Freed later, by the garbage
    collector or when the error is dropped, on the event loop's thread, its statement is
    reset, which takes the connection's mutex; if the connection went back to the pool
    and now waits in another coroutine for the write lock (the busy timeout), the whole
    loop waits with it, and the lock's holder cannot go on. Clearing the finished frames
    now frees the cursor while its connection is idle. (SQLAlchemy 2.1 closes it itself.)
    """
    if dialect.name == "sqlite" and dialect.is_async and driver_error is not None:
        traceback.clear_frames(driver_error.__traceback__)


def autocommit_options(dialect: Dialect) -> dict[str, Any]:
    """Execution options under which each statement commits by itself.

    For a read that should see what others committed, or a write that is one statement
    (atomic by itself): no BEGIN and no COMMIT, one round trip. PostgreSQL switches the
    connection to autocommit for the duration (SQLAlchemy's ``AUTOCOMMIT`` isolation
    level); our SQLite connections already are, unless a BEGIN is sent, so none is.
    """
    if dialect.name == "sqlite":
        return {SQLITE_BEGIN_OPTION: None}
    return {"isolation_level": "AUTOCOMMIT"}


READS_ALONE_OPTION = "aana_reads_alone"
"""Execution option of a connection whose reads run alone, in autocommit, until a
statement of another kind turns its session's transaction into a real one."""

_reading_alone: ContextVar[bool] = ContextVar("aana_reading_alone", default=False)


def reads_alone_options(dialect: Dialect) -> dict[str, Any]:
    """Execution options of a session transaction begun for reads that run alone.

    Each read runs in autocommit (one round trip, and it sees what others committed),
    and the transaction stays open for the next read at no cost. The first other
    statement (a flush, a query of the application's own) begins a real transaction
    first, so the session behaves as any SQLAlchemy session from then on.
    """
    return {**autocommit_options(dialect), READS_ALONE_OPTION: True}


@contextmanager
def read_alone() -> Iterator[None]:
    """Mark the statements run in the block as reads that may run alone."""
    token = _reading_alone.set(True)
    try:
        yield
    finally:
        _reading_alone.reset(token)


def in_driver_transaction(dbapi_connection: Any, dialect: Dialect) -> bool:
    """Whether statements sent now on this driver connection run inside a transaction.

    ``dbapi_connection`` is the pool's: the driver's own connection, or SQLAlchemy's
    adapter around an asyncio driver's (whose ``driver_connection`` is the driver's).
    """
    if dialect.name == "sqlite":
        driver_connection = getattr(dbapi_connection, "driver_connection", dbapi_connection)
        return bool(driver_connection.in_transaction)  # BEGIN was sent
    return not dbapi_connection.autocommit  # psycopg begins one by itself unless autocommit


def begin_when_needed(engine: Engine) -> None:
    """Make a reads-alone connection begin a real transaction before any other statement."""

    @event.listens_for(engine, "before_cursor_execute")
    def _begin_when_needed(
        connection: Connection,
        cursor: Any,
        _statement: str,
        _parameters: Any,
        context: Any,
        _executemany: bool,
    ) -> None:
        if _reading_alone.get() or not connection.get_execution_options().get(READS_ALONE_OPTION):
            return
        dbapi_connection = connection.connection.dbapi_connection
        if in_driver_transaction(dbapi_connection, connection.dialect):
            return
        if connection.dialect.name != "sqlite":
            dbapi_connection.autocommit = False  # type: ignore[union-attr]
            return
        reads = context is not None and not (
            context.isinsert or context.isupdate or context.isdelete or context.isddl
        )
        reads = reads and not getattr(context, "is_text", False)
        cursor.execute("BEGIN" if reads else "BEGIN IMMEDIATE")


def write_options(dialect: Dialect) -> dict[str, Any]:
    """Execution options of a write transaction: SQLite takes the write lock up front.

    A SQLite transaction that has read cannot take the write lock later if another
    writer committed meanwhile; ``BEGIN IMMEDIATE`` takes it at once (waiting up to the
    busy timeout). PostgreSQL needs nothing.
    """
    if dialect.name == "sqlite":
        return {SQLITE_BEGIN_OPTION: "IMMEDIATE"}
    return {}


ViolationKind = Literal["primary_key", "unique", "check", "foreign_key", "not_null", "other"]


@dataclass(frozen=True)
class Violation:
    """What kind of constraint a statement broke, and its name when the driver says.

    SQLite tells a primary key from another unique constraint but names neither;
    PostgreSQL names the constraint and reports both kinds as ``"unique"``.
    """

    kind: ViolationKind
    constraint: str | None = None


_SQLITE_VIOLATIONS: dict[str, ViolationKind] = {
    "SQLITE_CONSTRAINT_PRIMARYKEY": "primary_key",
    "SQLITE_CONSTRAINT_UNIQUE": "unique",
    "SQLITE_CONSTRAINT_CHECK": "check",
    "SQLITE_CONSTRAINT_FOREIGNKEY": "foreign_key",
    "SQLITE_CONSTRAINT_NOTNULL": "not_null",
}
_POSTGRESQL_VIOLATIONS: dict[type[Exception], ViolationKind] = (
    {
        psycopg.errors.UniqueViolation: "unique",
        psycopg.errors.CheckViolation: "check",
        psycopg.errors.ForeignKeyViolation: "foreign_key",
        psycopg.errors.NotNullViolation: "not_null",
    }
    if HAS_PSYCOPG
    else {}
)


def violation_of(driver_error: BaseException | None) -> Violation:
    """Read a constraint violation from the driver's exception, by class and error code."""
    if isinstance(driver_error, sqlite3.Error):
        name = getattr(driver_error, "sqlite_errorname", "")
        return Violation(_SQLITE_VIOLATIONS.get(name, "other"))
    if HAS_PSYCOPG and isinstance(driver_error, psycopg.Error):
        for error_class, kind in _POSTGRESQL_VIOLATIONS.items():
            if isinstance(driver_error, error_class):
                return Violation(kind, driver_error.diag.constraint_name)
    return Violation("other")


_POSTGRESQL_UNDEFINED: tuple[type[Exception], ...] = (
    (psycopg.errors.UndefinedTable, psycopg.errors.UndefinedColumn) if HAS_PSYCOPG else ()
)


def missing_schema(
    driver_error: BaseException | None, dbapi_connection: Any, tables: Sequence[Table]
) -> DatabaseNotMigratedError | None:
    """The error to raise if a statement failed on a table or column that is missing.

    PostgreSQL says so by error class (undefined table or column), and its message names
    what. SQLite has no error code of its own for it: on an ``OperationalError`` the
    schema of ``tables`` is checked, once, on the failed statement's connection.
    """
    if isinstance(driver_error, _POSTGRESQL_UNDEFINED):
        return DatabaseNotMigratedError(cause=str(driver_error).strip().splitlines()[0])
    if not isinstance(driver_error, sqlite3.OperationalError) or dbapi_connection is None:
        return None
    missing: list[str] = []
    cursor = dbapi_connection.cursor()
    try:
        for table in dict.fromkeys(tables):
            cursor.execute("SELECT name FROM pragma_table_info(?)", (table.name,))
            present = {row[0] for row in cursor.fetchall()}
            if not present:
                missing.append(f"the table {table.name!r}")
            else:
                missing.extend(
                    f"the column {table.name}.{column.name}"
                    for column in table.columns
                    if column.name not in present
                )
    finally:
        cursor.close()
    return DatabaseNotMigratedError(missing) if missing else None


def insert_with_new_ids(
    connection: Connection,
    table: Table,
    key: Column[Any],
    count: int,
    insert_rows: Callable[[list[int] | None], None],
) -> list[int]:
    """Insert ``count`` rows with ``insert_rows`` and return the ids they got, in order.

    The key is an integer autoincrement column, and no RETURNING is needed. PostgreSQL
    draws the ids from the column's sequence first and hands them to ``insert_rows``.
    SQLite, with one writer at a time, assigns rowids
    past the current maximum: the ids are read back from ``last_insert_rowid()``, and the
    count proves they are consecutive; a gap would mean SQLite chose rowids otherwise,
    and the transaction is abandoned rather than guess.
    """
    if connection.dialect.name == "postgresql":
        quoted_table = connection.dialect.identifier_preparer.format_table(table)
        sequence = func.pg_get_serial_sequence(quoted_table, key.name)
        draw = select(func.nextval(sequence)).select_from(func.generate_series(1, count))
        ids = sorted(connection.scalars(draw))
        insert_rows(ids)
        return ids
    before = connection.scalar(select(func.coalesce(func.max(key), 0)))
    insert_rows(None)
    last = connection.scalar(select(func.last_insert_rowid()))
    if last is None or before is None or last - before != count:
        raise RuntimeError(
            f"SQLite assigned non-consecutive ids in {table.name}; the insert was not kept"
        )
    return list(range(before + 1, last + 1))


_COPY_FROM_ROWS = 100
"""From this many rows on, COPY beats an executemany on PostgreSQL."""


class _RowRefused(Exception):
    """Making a row for COPY failed; the error itself is kept apart (``_kept_apart``)."""

    def __str__(self) -> str:
        return "a row was refused before it was sent"


def _kept_apart(
    rows: Iterable[tuple[Any, ...]], refused: list[Exception]
) -> Iterator[tuple[Any, ...]]:
    """``rows``; if making one fails, its error goes to ``refused`` and ``_RowRefused`` ends COPY.

    psycopg ends a COPY that an exception interrupts with the exception's text, which
    the server logs: a refused value's text must not go there.
    """
    try:
        yield from rows
    except Exception as error:
        refused.append(error)
        raise _RowRefused from None


def insert_many(
    connection: Connection,
    table: Table,
    names: Sequence[str],
    rows: Iterable[tuple[Any, ...]],
    count: int,
    stream: bool = False,
) -> None:
    """Insert ``count`` rows of values, already converted for the driver, in one bulk operation.

    With ``stream``, PostgreSQL takes many rows by COPY on the driver's connection (engine
    events do not see it), reading ``rows`` as it sends them: the server inserts the
    first while the next are made. Otherwise one executemany of an INSERT runs. Values
    never become SQL text: COPY carries data, the INSERT binds parameters.
    """
    if stream and connection.dialect.name == "postgresql" and count >= _COPY_FROM_ROWS:
        qualified = (table.schema, table.name) if table.schema else (table.name,)
        copy = pg_sql.SQL("COPY {} ({}) FROM STDIN").format(
            pg_sql.Identifier(*qualified), pg_sql.SQL(", ").join(map(pg_sql.Identifier, names))
        )
        driver_connection: Any = connection.connection.driver_connection
        cursor = driver_connection.cursor()
        refused: list[Exception] = []
        try:
            with cursor, cursor.copy(copy) as copying:
                for row in _kept_apart(rows, refused):
                    copying.write_row(row)
        except _RowRefused:
            raise refused[0] from None
        except psycopg.Error as error:
            # Raw driver errors, as SQLAlchemy would have wrapped them had it run the COPY.
            raise DBAPIError.instance(
                copy.as_string(driver_connection),
                None,
                error,
                psycopg.Error,
                dialect=connection.dialect,
            ) from error
        return
    columns = ", ".join(connection.dialect.identifier_preparer.quote(name) for name in names)
    table_name = connection.dialect.identifier_preparer.format_table(table)
    marker = "?" if connection.dialect.paramstyle == "qmark" else "%s"
    placeholders = ", ".join(marker for _ in names)
    connection.exec_driver_sql(
        f"INSERT INTO {table_name} ({columns}) VALUES ({placeholders})",  # noqa: S608 - names only
        [*rows],
    )


_MIGRATION_LOCK_KEY = 0x6161_6E6D  # "aanm": the advisory lock that serialises migrators
_MIGRATION_WAIT_MS = 600_000  # a migrator waits this long for another one to finish


@contextmanager
def exclusive_migrations(connection: Connection) -> Iterator[None]:
    """Keep every other migrator of this database out until the block ends.

    PostgreSQL takes a session-level advisory lock, so the block may run one transaction
    per migration; the query timeout is lifted meanwhile, as migrations may be long.
    SQLite's only lock between processes is its write lock, held by a transaction: the
    block runs inside one transaction begun EXCLUSIVE, which the caller commits or rolls
    back. Either way the version table is read inside the lock.

    Raises:
        MigrationsThroughPoolerError: PostgreSQL is reached through a transaction pooler,
            which would not keep the lock.

    """
    if connection.dialect.name != "postgresql":
        # On the driver's connection: through SQLAlchemy the PRAGMA would begin a
        # transaction (DEFERRED) before the EXCLUSIVE one.
        cursor = connection.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        (busy_timeout,) = cursor.execute("PRAGMA busy_timeout").fetchone()
        cursor.execute(f"PRAGMA busy_timeout={_MIGRATION_WAIT_MS}")
        try:
            connection.execution_options(**{SQLITE_BEGIN_OPTION: "EXCLUSIVE"})
            connection.begin()
            yield
        finally:
            cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout)}")
            cursor.close()
        return
    if pooling.behind_pooler(connection.engine):
        raise MigrationsThroughPoolerError(describe_database(connection.engine.url))
    connection.exec_driver_sql("SET statement_timeout = 0")
    connection.execute(select(func.pg_advisory_lock(_MIGRATION_LOCK_KEY)))
    connection.commit()
    try:
        yield
    finally:
        if connection.in_transaction():
            connection.rollback()
        connection.execute(select(func.pg_advisory_unlock(_MIGRATION_LOCK_KEY)))
        connection.exec_driver_sql("RESET statement_timeout")
        connection.commit()


TASKS_CHANNEL = "aana_tasks"
"""The PostgreSQL notification channel on which new tasks are announced (by a trigger on
the tasks table: migration ``0003_notify_new_tasks``)."""


def change_counter(dbapi_connection: Any) -> int:
    """SQLite: a number that changes whenever another connection commits to the database.

    ``PRAGMA data_version``, read from shared memory: cheap enough to ask every
    millisecond.
    """
    (version,) = dbapi_connection.execute("PRAGMA data_version").fetchone()
    return int(version)


def supports_notifications(engine: Engine) -> bool:
    """Whether workers on this engine can be woken by notifications."""
    return engine.dialect.name == "postgresql"


def counts_need_folding(dialect: Dialect) -> bool:
    """Whether ``task_counts`` gains a row per change, to fold now and then.

    On PostgreSQL its triggers only insert (writers never wait on one counter row); on
    SQLite, one writer at a time, they keep one row per endpoint and status.
    """
    return dialect.name == "postgresql"
