"""Transaction-pooling proxies (PgBouncer) between aana and PostgreSQL.

Behind PgBouncer in transaction mode, each transaction may run on another server
session, so nothing may rely on session state across transactions: no server-side
prepared statements, no ``SET`` outside a transaction, no session advisory locks, no
``LISTEN``. A PostgreSQL engine finds out on its first connection: the server process
that answers ``pg_backend_pid()`` is then not the one the driver was told about when it
connected (PgBouncer hands out keys of its own). Every connection of a pooled engine
then turns off psycopg's automatic prepared statements.
"""

from __future__ import annotations

import logging
import threading
from typing import Any
from weakref import WeakKeyDictionary

from sqlalchemy import Engine, event

from aana.exceptions.config import ConfigurationError

logger = logging.getLogger(__name__)

_URL_SCHEMES = ("postgresql://", "postgres://")


def direct_conninfo(url: str) -> str:
    """A libpq connection string for a direct connection given as a URL.

    ``postgresql://user@host:5432/db`` (SQLAlchemy's ``postgresql+psycopg://`` also works).

    Raises:
        ConfigurationError: ``url`` is not a PostgreSQL URL.

    """
    scheme, separator, rest = url.partition("://")
    conninfo = f"{scheme.split('+', 1)[0]}{separator}{rest}"
    if not conninfo.startswith(_URL_SCHEMES):
        raise ConfigurationError(
            "listen_url must be a PostgreSQL URL with a direct connection to the server "
            "(not through a pooler), e.g. postgresql://aana@db.internal:5432/aana; got a "
            f"value starting with {scheme[:20]!r}."
        )
    return conninfo


_POOLED: WeakKeyDictionary[Engine, bool] = WeakKeyDictionary()
"""Per engine: whether it reaches PostgreSQL through a transaction pooler (once known)."""
_lock = threading.Lock()


def watch_for_pooler(engine: Engine) -> None:
    """Detect a transaction pooler on ``engine``'s first connection and adapt every one.

    Costs one round trip, on the engine's first connection only.
    """
    if engine.dialect.name != "postgresql":
        return

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, record: Any) -> None:
        pooled = _POOLED.get(engine)
        if pooled is None:
            pooled = _detect(dbapi_connection, record.driver_connection)
            with _lock:
                if engine not in _POOLED:
                    _POOLED[engine] = pooled
                    if pooled:
                        logger.info(
                            "PostgreSQL is reached through a transaction pooler: no "
                            "prepared statements, no session state"
                        )
        if pooled:
            record.driver_connection.prepare_threshold = None


def _detect(dbapi_connection: Any, driver_connection: Any) -> bool:
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("SELECT pg_backend_pid()")
        (server_pid,) = cursor.fetchone()
    finally:
        cursor.close()
        dbapi_connection.rollback()  # leave no transaction open on a fresh connection
    return bool(server_pid != driver_connection.info.backend_pid)


def behind_pooler(engine: Engine) -> bool:
    """Whether ``engine`` reaches PostgreSQL through a transaction pooler.

    Connects once if the engine has not connected yet; False for SQLite.

    Raises:
        DatabaseConnectionException: The database could not be reached to find out.

    """
    if engine.dialect.name != "postgresql":
        return False
    pooled = _POOLED.get(engine)
    if pooled is None:
        with engine.connect():
            pass
        pooled = _POOLED.get(engine, False)
    return pooled
