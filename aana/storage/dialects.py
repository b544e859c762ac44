"""Everything that differs between SQLite and PostgreSQL, in one place.

Repositories and the queue build portable SQLAlchemy statements; this module supplies
the pieces that must be rendered or configured per dialect: the database clock, engine
options and connection setup, and reading constraint violations from driver errors.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import Any, Literal

import psycopg.errors
from sqlalchemy import Connection, Engine, event, func, literal, select
from sqlalchemy.engine import URL
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.functions import FunctionElement

from aana.storage.types import UtcDateTime

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
    if not element.clauses.clauses:
        return "now()"
    return f"(now() + {compiler.process(element.clauses, **kw)} * interval '1 second')"


@compiles(utcnow, "sqlite")
def _utcnow_sqlite(element: utcnow, compiler: SQLCompiler, **kw: Any) -> str:
    if not element.clauses.clauses:
        return f"strftime('{_SQLITE_NOW_FORMAT}', 'now')"
    shift = compiler.process(element.clauses, **kw)
    return f"strftime('{_SQLITE_NOW_FORMAT}', 'now', ({shift}) || ' seconds')"


def sqlite_engine_options(path: str, connection_timeout: int) -> dict[str, Any]:
    """``create_engine`` arguments for a SQLite file."""
    return {
        "url": URL.create("sqlite", database=path),
        "connect_args": {"timeout": connection_timeout, "check_same_thread": False},
    }


def postgresql_engine_options(
    config: dict[str, Any], connection_timeout: int, query_timeout: int
) -> dict[str, Any]:
    """``create_engine`` arguments for PostgreSQL through psycopg 3."""
    url = URL.create(
        "postgresql+psycopg",
        username=config["user"],
        password=config["password"],
        host=config["host"],
        port=int(config["port"]),
        database=config["database"],
    )
    options = f"-c timezone=UTC -c statement_timeout={int(query_timeout) * 1000}"
    return {
        "url": url,
        "connect_args": {
            "connect_timeout": connection_timeout,
            "options": options,
            "application_name": "aana",
        },
    }


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
        if mode not in ("DEFERRED", "IMMEDIATE", "EXCLUSIVE"):
            raise ValueError(f"unknown SQLite transaction mode {mode!r}")
        connection.exec_driver_sql(f"BEGIN {mode}")


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
_POSTGRESQL_VIOLATIONS: dict[type[Exception], ViolationKind] = {
    psycopg.errors.UniqueViolation: "unique",
    psycopg.errors.CheckViolation: "check",
    psycopg.errors.ForeignKeyViolation: "foreign_key",
    psycopg.errors.NotNullViolation: "not_null",
}


def violation_of(driver_error: BaseException | None) -> Violation:
    """Read a constraint violation from the driver's exception, by class and error code."""
    if isinstance(driver_error, sqlite3.Error):
        name = getattr(driver_error, "sqlite_errorname", "")
        return Violation(_SQLITE_VIOLATIONS.get(name, "other"))
    if isinstance(driver_error, psycopg.Error):
        for error_class, kind in _POSTGRESQL_VIOLATIONS.items():
            if isinstance(driver_error, error_class):
                return Violation(kind, driver_error.diag.constraint_name)
    return Violation("other")


_QUEUE_LOCK_KEY = 0x6161_6E61  # "aana": the advisory lock that serialises fair claims


def serialize_claims(connection: Connection) -> None:
    """Make concurrent claimers of the task queue take turns, until the transaction ends.

    SQLite already does: a claim's transaction begins IMMEDIATE, taking the one write
    lock. PostgreSQL takes a transaction-scoped advisory lock.
    """
    if connection.dialect.name == "postgresql":
        connection.execute(select(func.pg_advisory_xact_lock(_QUEUE_LOCK_KEY)))


TASKS_CHANNEL = "aana_tasks"
"""The PostgreSQL notification channel on which new tasks are announced."""


def notify_new_tasks(connection: Connection) -> None:
    """Wake idle workers when the current transaction commits.

    PostgreSQL delivers the notification at commit; SQLite has no such thing, and its
    workers poll instead.
    """
    if connection.dialect.name == "postgresql":
        connection.execute(select(func.pg_notify(TASKS_CHANNEL, "")))


def supports_notifications(engine: Engine) -> bool:
    """Whether workers on this engine can be woken by notifications."""
    return engine.dialect.name == "postgresql"
