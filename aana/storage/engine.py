"""Engines from ``DbSettings``: dialect options, pools, connection errors, one per settings.

The settings are plain data; the engines built from them are kept here, by the identity
of the settings object, for as long as that object lives. This module does not import
``aana.configs`` (only for type checking): the configuration delegates to it, never the
other way round. An engine is built from an ``EngineSpec``, the settings' checked values:
a worker process receives one and builds its engine without loading the settings.
"""

from __future__ import annotations

import dataclasses
import json
import threading
import weakref
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from weakref import WeakKeyDictionary

import sqlalchemy
from sqlalchemy import Engine, Table, event
from sqlalchemy.engine import URL, ExceptionContext
from sqlalchemy.sql.visitors import iterate

from aana.exceptions.config import ConfigurationError
from aana.exceptions.db import (
    DatabaseConnectionException,
    InvalidInputException,
)
from aana.storage import dialects, pooling

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

    from aana.configs.db import DbSettings


@dataclass(frozen=True)
class EngineSpec:
    """What an engine is built from: the values of a ``DbSettings``, checked.

    Plain data (JSON as ``dataclasses.asdict`` gives it), so that a worker process can be
    handed its database without loading the settings' models. The repr leaves out
    ``datastore_config``, which may hold a password.
    """

    datastore_type: str
    datastore_config: Mapping[str, Any] = field(repr=False)
    pool_size: int
    max_overflow: int
    pool_recycle: int
    query_timeout: int
    connection_timeout: int
    idle_in_transaction_timeout: int

    @classmethod
    def of(cls, settings: DbSettings) -> EngineSpec:
        """The spec of ``settings``.

        Raises:
            ConfigurationError: ``datastore_type`` is not supported (a ``ValueError``), or
                a value of ``datastore_config`` has the wrong type.
            MissingConfigKeyError: ``datastore_config`` lacks a key (a ``KeyError``).

        """
        datastore_type, config = settings.checked_config()
        if "path" in config:
            config = {**config, "path": str(config["path"])}  # a PathLike is not JSON
        return cls(
            datastore_type.value,
            config,
            pool_size=settings.pool_size,
            max_overflow=settings.max_overflow,
            pool_recycle=settings.pool_recycle,
            query_timeout=settings.query_timeout,
            connection_timeout=settings.connection_timeout,
            idle_in_transaction_timeout=settings.idle_in_transaction_timeout,
        )

    def to_json(self) -> str:
        """The spec as JSON, for another process (see ``from_json``); it holds the password."""
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> EngineSpec:
        """The spec ``to_json`` wrote."""
        return cls(**json.loads(text))


_CONNECT_ARGS: WeakKeyDictionary[Engine, dict[str, Any]] = WeakKeyDictionary()
"""The ``connect_args`` each engine was created with (timeouts, session options)."""


def driver_connect_arguments(engine: Engine) -> tuple[list[Any], dict[str, Any]]:
    """Arguments for the driver's ``connect()`` to open a connection of one's own.

    The connection is configured as the engine's own are at connect time (timeouts,
    session options), but it belongs to no pool: for a long-lived connection such as
    the task listener's. Event hooks of the engine (SQLite's pragmas) do not apply.
    """
    cargs, cparams = engine.dialect.create_connect_args(engine.url)
    return list(cargs), {**cparams, **_CONNECT_ARGS.get(engine, {})}


def _sqlite_path(config: Mapping[str, Any]) -> str:
    path = Path(config["path"]).expanduser()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ConfigurationError(
            f"cannot create the folder {str(path.parent)!r} for the SQLite database "
            f"({error.strerror}); set datastore_config.path to a writable location."
        ) from error
    if path.is_dir():
        raise ConfigurationError(
            f"datastore_config.path {str(path)!r} is a folder; give the path of a database "
            f"file instead, e.g. {str(path / 'aana.db')!r}."
        )
    return str(path)


def _engine_options(settings: EngineSpec) -> dict[str, Any]:
    config = settings.datastore_config
    # The values of DbType are SQLAlchemy's dialect names.
    if settings.datastore_type == "sqlite":
        options = dialects.sqlite_engine_options(_sqlite_path(config), settings.connection_timeout)
    else:
        if not dialects.HAS_PSYCOPG:
            raise ConfigurationError(
                "datastore_type 'postgresql' needs the psycopg driver, which is not "
                "installed; install it with: pip install 'aana-storage[postgresql]'."
            )
        options = dialects.postgresql_engine_options(
            config,
            settings.connection_timeout,
            settings.query_timeout,
            settings.idle_in_transaction_timeout,
        )
    options.update(
        pool_size=settings.pool_size,
        max_overflow=settings.max_overflow,
        pool_recycle=settings.pool_recycle,
        pool_timeout=settings.connection_timeout,
        # No pre-ping: it costs a round trip per checkout on the queue's hot path. A
        # connection the server dropped fails once; SQLAlchemy then discards the pool.
    )
    return options


def _report_errors(engine: Engine) -> None:
    @event.listens_for(engine, "handle_error")
    def _on_error(context: ExceptionContext) -> None:
        dialects.release_failed_statement(context.dialect, context.original_exception)
        if isinstance(context.original_exception, InvalidInputException):
            # A column type refused a value (aana.storage.checks): raise that, not
            # SQLAlchemy's StatementError around it, so Core users see what repositories do.
            raise context.original_exception from None
        if context.connection is not None and not context.is_pre_ping:
            _refuse_unmigrated(context)
        if context.connection is not None or context.is_pre_ping:
            return  # a statement failed on a live connection: not a connection problem
        error = connection_error(engine.url, context.original_exception)
        raise error from context.sqlalchemy_exception


def _tables_of(context: ExceptionContext) -> list[Table]:
    # The model tables the failed statement uses (none for textual SQL).
    compiled = context.execution_context.compiled if context.execution_context else None
    if compiled is None or compiled.statement is None:
        return []
    return [element for element in iterate(compiled.statement) if isinstance(element, Table)]


def _refuse_unmigrated(context: ExceptionContext) -> None:
    """Raise ``DatabaseNotMigratedError`` if the statement failed on a missing table or column."""
    tables = _tables_of(context)
    connection = context.connection
    dbapi_connection = connection.connection.dbapi_connection if connection else None
    error = dialects.missing_schema(context.original_exception, dbapi_connection, tables)
    if error is not None:
        raise error from context.sqlalchemy_exception


def connection_error(url: URL, error: BaseException) -> DatabaseConnectionException:
    """What to raise when no connection to the database at ``url`` could be made."""
    where = dialects.describe_database(url)
    cause = str(error).strip().splitlines()[0]
    return DatabaseConnectionException(
        f"Cannot connect to {where}: {cause}. Check that the server is running and "
        "reachable, and the datastore_config settings."
    )


def _configure(engine: Engine, settings: EngineSpec) -> None:
    if engine.dialect.name == "sqlite":
        dialects.configure_sqlite_engine(engine, settings.connection_timeout * 1000)
    dialects.begin_when_needed(engine)
    pooling.watch_for_pooler(engine)
    _report_errors(engine)


def create_engine(settings: EngineSpec) -> Engine:
    """A new engine for ``settings``."""
    options = _engine_options(settings)
    engine = sqlalchemy.create_engine(options.pop("url"), **options)
    _CONNECT_ARGS[engine] = dict(options.get("connect_args", {}))
    _configure(engine, settings)
    return engine


def create_async_engine(settings: EngineSpec) -> AsyncEngine:
    """A new asyncio engine for ``settings`` (aiosqlite or psycopg's async mode)."""
    options = _engine_options(settings)
    # Imported here: it loads the ORM, which a worker process does without.
    from sqlalchemy.ext.asyncio import create_async_engine as sa_create_async_engine

    engine = sa_create_async_engine(dialects.async_url(options.pop("url")), **options)
    _configure(engine.sync_engine, settings)
    return engine


@dataclass
class _Engines:
    """The engines built for one settings object, and the values they were built from."""

    owner: weakref.ref[DbSettings]
    values: dict[str, Any] = field(default_factory=dict)
    sync: Engine | None = None
    asyncio: AsyncEngine | None = None


_lock = threading.Lock()
_engines: dict[int, _Engines] = {}
"""By ``id`` of the settings object: settings compare by value, but each object has its
own engines (a ``model_copy`` builds new ones). An entry goes when its settings object
is collected, so the cache keeps neither the settings nor their engines alive."""


def _forget(key: int, owner: weakref.ref[DbSettings]) -> None:
    # Runs while the settings object is collected, possibly in a thread that holds _lock:
    # so no locking (single dict operations), and only the dead owner's own entry goes.
    entry = _engines.get(key)
    if entry is not None and entry.owner is owner:
        _engines.pop(key, None)


def _values_of(settings: DbSettings) -> dict[str, Any]:
    # Everything an engine is built from: the fields' values. Settings can be assigned
    # field by field, or datastore_config changed in place (hence its copy): an engine
    # built from other values is stale. Cheap, as it runs on every get_engine().
    return {**vars(settings), "datastore_config": dict(settings.datastore_config)}


def _entry_of(settings: DbSettings) -> _Engines:
    # The caller holds _lock.
    key = id(settings)
    values = _values_of(settings)
    entry = _engines.get(key)
    if entry is None or entry.owner() is not settings:
        owner = weakref.ref(settings, lambda dead: _forget(key, dead))
        entry = _engines[key] = _Engines(owner, values)
    elif entry.values != values:
        _retire(entry)
        entry.values = values
    return entry


def _retire(entry: _Engines) -> None:
    """Let go of engines built from values their settings no longer hold."""
    if entry.sync is not None:
        # Safe while other threads use it: dispose() closes only the idle connections;
        # checked-out ones finish their work and are closed when returned.
        entry.sync.dispose()
    # An asyncio engine is disposed by awaiting, which this (sync) code cannot do: it
    # is dropped, and its connections close when it is collected.
    entry.sync = None
    entry.asyncio = None


def engine_for(settings: DbSettings) -> Engine:
    """The engine of ``settings``: built on the first call, the same one after.

    A new engine is built when the settings' values changed since (a field assigned);
    the old one is disposed. ``DbSettings.get_engine()`` delegates here; it raises what
    ``create_engine`` raises.
    """
    with _lock:
        entry = _entry_of(settings)
        if entry.sync is None:
            entry.sync = create_engine(EngineSpec.of(settings))
        return entry.sync


def async_engine_for(settings: DbSettings) -> AsyncEngine:
    """The asyncio engine of ``settings``, built once like ``engine_for``."""
    with _lock:
        entry = _entry_of(settings)
        if entry.asyncio is None:
            entry.asyncio = create_async_engine(EngineSpec.of(settings))
        return entry.asyncio
