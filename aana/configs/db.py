"""Database settings: which datastore to use and how to connect to it."""

from __future__ import annotations

from collections.abc import Iterator
from enum import Enum
from os import PathLike
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import PlainValidator, PrivateAttr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from typing_extensions import TypedDict

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

    """

    model_config = SettingsConfigDict(extra="ignore", hide_input_in_errors=True)

    datastore_type: DbType | str = DbType.SQLITE
    datastore_config: Annotated[SQLiteConfig | PostgreSQLConfig, PlainValidator(_as_mapping)] = (
        SQLiteConfig(path="/var/lib/aana_data")
    )
    pool_size: int = 5
    max_overflow: int = 10
    pool_recycle: int = 3600
    query_timeout: int = 30
    connection_timeout: int = 10

    _engine: Engine | None = PrivateAttr(default=None)
    _async_engine: AsyncEngine | None = PrivateAttr(default=None)

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

    def get_engine(self) -> Engine:
        """The engine for these settings, built on the first call and reused after.

        Raises:
            ValueError: ``datastore_type`` is not supported.
            KeyError: ``datastore_config`` lacks a key the datastore requires.

        """
        if self._engine is None:
            from aana.storage.engine import create_engine

            self._engine = create_engine(self)
        return self._engine

    def get_async_engine(self) -> AsyncEngine:
        """The asyncio engine for these settings (*ours*), built once like ``get_engine``."""
        if self._async_engine is None:
            from aana.storage.engine import create_async_engine

            self._async_engine = create_async_engine(self)
        return self._async_engine
