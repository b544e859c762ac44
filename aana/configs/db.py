"""Database settings: which datastore to use and how to connect to it.

Plain data. The engines are built and kept by ``aana.storage.engine``; ``get_engine`` and
``get_async_engine`` delegate to it, importing it on the first call, so that reading the
configuration loads no SQLAlchemy. The dependency goes one way: ``aana.storage.engine``
does not import this module.
"""

from __future__ import annotations

from collections.abc import Iterator
from enum import Enum
from os import PathLike
from typing import TYPE_CHECKING, Annotated, Any, NotRequired

from pydantic import (
    Field,
    PlainValidator,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict
from typing_extensions import TypedDict

from aana.exceptions.config import ConfigurationError, MissingConfigKeyError

if TYPE_CHECKING:
    from sqlalchemy import Engine
    from sqlalchemy.ext.asyncio import AsyncEngine


class DbType(str, Enum):
    """The supported datastores."""

    SQLITE = "sqlite"
    POSTGRESQL = "postgresql"


class SQLiteConfig(TypedDict):
    """Where the SQLite database file lives."""

    path: PathLike[str] | str


class PostgreSQLConfig(TypedDict):
    """How to reach a PostgreSQL database.

    Without ``password``, libpq finds one as ``psql`` does: ``PGPASSWORD``, ``~/.pgpass``
    (or ``PGPASSFILE``), or none for trust and peer authentication.
    """

    host: str
    port: int
    user: str
    password: NotRequired[str]
    database: str


OPTIONAL_KEYS = frozenset({"password"})
"""Keys of a datastore_config that may be left out (``__required_keys__`` cannot tell:
the annotations of this module are strings)."""

SQLITE_EXAMPLE = (
    'sqlite:////var/lib/aana_data or {"datastore_config": {"path": "/var/lib/aana_data"}}'
)
POSTGRESQL_EXAMPLE = (
    "postgresql://user@host:5432/database (the password from PGPASSWORD or ~/.pgpass) or "
    '{"datastore_type": "postgresql", "datastore_config": {"host": "host", "port": 5432, '
    '"user": "user", "database": "database"}}'
)


def example_for(datastore: object) -> str:
    """A DB_CONFIG example for the datastore the user asked for (SQLite if unknown)."""
    return POSTGRESQL_EXAMPLE if "postgres" in str(datastore).lower() else SQLITE_EXAMPLE


def config_from_url(url: str) -> dict[str, Any]:
    """``datastore_type`` and ``datastore_config`` from a database URL.

    ``postgresql://user[:password]@host[:port]/database`` (any ``postgresql+driver``) or
    ``sqlite:///relative/path``, ``sqlite:////absolute/path``; parsed by SQLAlchemy's
    ``make_url``.

    Raises:
        ConfigurationError: The URL cannot be parsed, names another database, or lacks
            a part aana needs; the message shows a URL that works.

    """
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url.strip())
    except ArgumentError:
        raise ConfigurationError(
            f"DB_CONFIG is neither JSON nor a database URL; use {SQLITE_EXAMPLE}, or "
            f"{POSTGRESQL_EXAMPLE}."
        ) from None
    backend = parsed.get_backend_name()
    if parsed.query:
        raise ConfigurationError(
            f"the DB_CONFIG URL has query parameters ({', '.join(sorted(parsed.query))}), "
            "which aana does not pass on; remove them (libpq's PG* environment variables, "
            f"such as PGSSLMODE, apply to PostgreSQL), e.g. {example_for(backend)}."
        )
    if backend == "sqlite":
        if not parsed.database or parsed.database == ":memory:":
            raise ConfigurationError(
                f"the DB_CONFIG URL {parsed.render_as_string()!r} names no database file "
                f"(an in-memory database is not shared between connections); use {SQLITE_EXAMPLE}."
            )
        return {"datastore_type": DbType.SQLITE, "datastore_config": {"path": parsed.database}}
    if backend in ("postgresql", "postgres"):
        missing = [
            part
            for part, value in (
                ("user", parsed.username),
                ("host", parsed.host),
                ("database", parsed.database),
            )
            if not value
        ]
        if missing:
            raise ConfigurationError(
                f"the DB_CONFIG URL lacks the {' and '.join(missing)}; use {POSTGRESQL_EXAMPLE}."
            )
        config: dict[str, Any] = {
            "host": parsed.host,
            "port": parsed.port or 5432,
            "user": parsed.username,
            "database": parsed.database,
        }
        if parsed.password is not None:
            config["password"] = parsed.password
        return {"datastore_type": DbType.POSTGRESQL, "datastore_config": config}
    supported = ", ".join(repr(member.value) for member in DbType)
    raise ConfigurationError(
        f"the DB_CONFIG URL is for {backend!r}, which is not supported; use one of "
        f"{supported}: {SQLITE_EXAMPLE}, or {POSTGRESQL_EXAMPLE}."
    )


def _as_mapping(value: Any) -> dict[str, Any]:
    # Keys and their types are checked per datastore when the engine is built, so that a
    # missing key is reported as a KeyError naming it (the documented behaviour).
    if not isinstance(value, dict):
        raise ValueError(
            'datastore_config must be an object, e.g. {"path": "/var/lib/aana_data"} for '
            'SQLite or {"host": ..., "port": ..., "user": ..., "password": ..., '
            '"database": ...} for PostgreSQL'
        )
    return dict(value)


class DbSettings(BaseSettings):
    """Database settings.

    Attributes:
        datastore_type: ``"sqlite"`` (default) or ``"postgresql"``.
        datastore_config: ``SQLiteConfig`` or ``PostgreSQLConfig``.
        pool_size: Connections kept open in the pool.
        max_overflow: Extra connections allowed beyond ``pool_size``.
        pool_recycle: Seconds after which a pooled connection is replaced.
        query_timeout: Seconds a statement may run (PostgreSQL); 0 means no limit.
        connection_timeout: Seconds to wait for a connection, or for SQLite's write lock.
        idle_in_transaction_timeout: Seconds a PostgreSQL session may sit idle inside a
            transaction before the server ends it (releasing its locks); 0 means no
            limit. Workers set it for their own connections.

    """

    # Fields can be assigned (code written for the original SDK does), and are checked
    # when they are: the next get_engine() builds an engine for the new values. The prefix
    # keeps stray variables (POOL_SIZE ...) out; DB_CONFIG__POOL_SIZE=3 means the same
    # here and in Settings.
    model_config = SettingsConfigDict(
        extra="ignore",
        hide_input_in_errors=True,
        validate_assignment=True,
        env_prefix="DB_CONFIG__",
    )

    datastore_type: DbType | str = DbType.SQLITE
    datastore_config: Annotated[SQLiteConfig | PostgreSQLConfig, PlainValidator(_as_mapping)] = (
        SQLiteConfig(path="/var/lib/aana_data")
    )
    pool_size: int = Field(default=5, ge=1)
    max_overflow: int = Field(default=10, ge=0)
    pool_recycle: int = Field(default=3600, ge=-1)
    query_timeout: int = Field(default=30, ge=0)
    connection_timeout: int = Field(default=10, ge=1)
    idle_in_transaction_timeout: int = Field(default=0, ge=0)

    @model_validator(mode="before")
    @classmethod
    def _url_as_fields(cls, data: Any) -> Any:
        # DB_CONFIG (or db_config=) may be a URL; its other keys (DB_CONFIG__POOL_SIZE)
        # arrive beside it as "url".
        if isinstance(data, str):
            data = {"url": data}
        if isinstance(data, dict) and isinstance(data.get("url"), str):
            rest = {key: value for key, value in data.items() if key != "url"}
            return {**rest, **config_from_url(data["url"])}
        return data

    @classmethod
    def from_url(cls, url: str, **settings: Any) -> DbSettings:
        """Settings for the database at ``url`` (*ours*), with other ``settings`` as keywords.

        Raises:
            ConfigurationError: The URL is not one aana can use; the message says why.

        """
        return cls(**settings, **config_from_url(url))

    @field_validator("datastore_type")
    @classmethod
    def _known_type_as_enum(cls, value: DbType | str) -> DbType | str:
        # An unknown type stays a string: get_engine() rejects it with a ValueError.
        try:
            return DbType(value)
        except ValueError:
            return value

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        for name, value in super().__repr_args__():
            if name == "datastore_config" and isinstance(value, dict) and "password" in value:
                value = {**value, "password": "***"}
            yield name, value

    def checked_config(self) -> tuple[DbType, dict[str, Any]]:
        """The datastore type and its config, checked for missing keys and wrong types.

        Raises:
            ConfigurationError: ``datastore_type`` is not supported (a ``ValueError``), or
                a value of ``datastore_config`` has the wrong type.
            MissingConfigKeyError: ``datastore_config`` lacks a key (a ``KeyError``).

        """
        try:
            datastore_type = DbType(self.datastore_type)
        except ValueError:
            supported = ", ".join(repr(member.value) for member in DbType)
            raise ConfigurationError(
                f"datastore_type {self.datastore_type!r} is not supported; use one of {supported}."
            ) from None
        config_type: type[Any] = (
            SQLiteConfig if datastore_type is DbType.SQLITE else PostgreSQLConfig
        )
        required = tuple(key for key in config_type.__annotations__ if key not in OPTIONAL_KEYS)
        for key in required:
            if key not in self.datastore_config:
                raise MissingConfigKeyError(key, datastore_type.value, required)
        try:
            checked: dict[str, Any] = TypeAdapter(config_type).validate_python(
                dict(self.datastore_config)
            )
        except ValidationError as error:
            problems = "; ".join(
                f"datastore_config.{'.'.join(map(str, e['loc']))}: {e['msg']}"
                for e in error.errors()
            )
            raise ConfigurationError(
                f"{problems} (datastore_type {datastore_type.value!r})."
            ) from None
        return datastore_type, checked

    def get_engine(self) -> Engine:
        """The engine for these settings, built on the first call and reused after.

        Each settings object has its own engine, also when another one compares equal.
        After a field is assigned, the next call builds an engine for the new values.

        Raises:
            ValueError: ``datastore_type`` is not supported.
            KeyError: ``datastore_config`` lacks a key the datastore requires.

        """
        from aana.storage.engine import engine_for

        return engine_for(self)

    def get_async_engine(self) -> AsyncEngine:
        """The asyncio engine for these settings (*ours*), built once like ``get_engine``."""
        from aana.storage.engine import async_engine_for

        return async_engine_for(self)
