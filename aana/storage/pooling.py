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

logger = logging.getLogger(__name__)

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
