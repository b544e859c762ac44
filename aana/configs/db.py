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
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import (
    Field,
    PlainValidator,
    TypeAdapter,
    ValidationError,
    field_validator,
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
    """How to reach a PostgreSQL database."""

    host: str
    port: int
    user: str
    password: str
    database: str


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

    # Frozen: a settings object's engine is built from it once, so it must not change
    # under the engine; model_copy(update=...) makes new settings, with their own engine.
    # The prefix keeps stray variables (POOL_SIZE ...) out; DB_CONFIG__POOL_SIZE=3 means
    # the same here and in Settings.
    model_config = SettingsConfigDict(
        extra="ignore", hide_input_in_errors=True, frozen=True, env_prefix="DB_CONFIG__"
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
        required = tuple(config_type.__annotations__)
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
