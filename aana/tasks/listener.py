"""Waking idle workers: PostgreSQL notifications, SQLite's change counter.

The listener's connection is a driver connection of its own (``psycopg.connect``,
``sqlite3.connect``), opened with the engine's connect arguments but outside its pool,
so that it never holds a slot the worker needs. The worker still polls as the
fallback while the listener is down.

``LISTEN`` needs a session of its own: behind a transaction pooler (PgBouncer) the
listener connects to ``listen_url``, a direct connection to the server, if one is given;
without it the listener says so once and stays off, and the worker polls.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from typing import Any

from sqlalchemy import Engine

from aana.storage.dialects import (
    HAS_PSYCOPG,
    TASKS_CHANNEL,
    change_counter,
    supports_notifications,
)
from aana.storage.engine import driver_connect_arguments
from aana.storage.pooling import behind_pooler, direct_conninfo

try:
    import psycopg
    from psycopg import sql as pg_sql
except ImportError:  # SQLite only: the postgresql extra is not installed
    pass

logger = logging.getLogger(__name__)


def _is_psycopg(connection: object) -> bool:
    return HAS_PSYCOPG and isinstance(connection, psycopg.Connection)


_FIRST_LOOK = 0.001  # seconds between looks at SQLite's change counter after a change ...
_LAST_LOOK = 0.004  # ... backing off to this while nothing changes (250 cheap looks a
# second: an idle worker starts a new task within a few milliseconds)
_FIRST_RETRY = 0.1  # seconds before reconnecting after a loss, doubling ...
_LAST_RETRY = 5.0  # ... up to this
_WHERE = ("host", "hostaddr", "port", "dbname", "user", "password")
"""Connection parameters a ``listen_url`` gives instead of the engine."""
_NOTIFY_WAIT = 0.5  # longest wait for a notification: how soon ``stop()`` is noticed


class Listener:
    """Sets ``wake`` whenever a task may have become claimable.

    On PostgreSQL it listens for the notification sent by every insert into the tasks
    table. SQLite has no notifications, but a connection can ask whether others have
    committed anything since it last asked (``PRAGMA data_version``, which reads
    shared memory, not the file): the listener asks every millisecond after a change,
    backing off to every 4 ms while nothing changes.

    If its connection fails, it reconnects, waiting 0.1 s at first and doubling up to
    5 s between tries; an outage is logged once (a warning when lost, info when back).

    Args:
        engine: The engine of the queue's database.
        wake: The event to set.
        url: A direct connection to PostgreSQL for ``LISTEN`` (needed behind a
            transaction pooler); by default the engine's own settings.

    Attributes:
        listening: Set while the listener is connected and watching.
        wakeups: How many notifications (or changes, on SQLite) set ``wake``.
        connections: How many times it connected (reconnections included).

    """

    def __init__(self, engine: Engine, wake: threading.Event, url: str | None = None) -> None:
        self.engine = engine
        self.wake = wake
        self._conninfo = direct_conninfo(url) if url else None
        self.listening = threading.Event()
        self.wakeups = 0
        self.connections = 0
        self._stopped = threading.Event()
        self._dropping = threading.Event()
        self._thread: threading.Thread | None = None
        self._connection: Any = None

    def start(self) -> None:
        """Listen in a background thread."""
        self._stopped.clear()
        self._thread = threading.Thread(target=self._run, name="aana-listener", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop listening; returns within about a second."""
        self._stopped.set()
        if self._thread is not None:
            self._thread.join(timeout=2)

    @property
    def backend_pid(self) -> int | None:
        """PostgreSQL: the server process of the listener's connection (None if none)."""
        connection = self._connection
        if _is_psycopg(connection):
            return int(connection.info.backend_pid)
        return None

    def drop_connection(self) -> None:
        """Make the listener lose its connection, as a failure would (for tests).

        The listener's own thread drops it: closing a connection while another thread
        uses it is not safe (sqlite3 may crash the process).
        """
        self._dropping.set()

    def _check_dropped(self) -> None:
        if self._dropping.is_set():
            self._dropping.clear()
            raise ConnectionError("the connection was dropped")

    def _run(self) -> None:
        retry = _FIRST_RETRY
        lost = False
        while not self._stopped.is_set():
            started = time.monotonic()
            try:
                connection = self._connect()
            except _PooledWithoutDirectUrl:
                logger.warning(
                    "PostgreSQL is reached through a transaction pooler, where LISTEN does "
                    "not work: polling for new tasks instead. Set task_queue.listen_url "
                    "(aana worker --listen-url) to a direct connection to be woken at once."
                )
                return
            except Exception as error:
                if not lost:
                    logger.warning(
                        "task notifications unavailable (%s); polling until reconnected",
                        _one_line(error),
                    )
                    lost = True
                self._stopped.wait(retry)
                retry = min(retry * 2, _LAST_RETRY)
                continue
            if lost:
                logger.info("task notifications back")
                lost = False
            try:
                self._connection = connection
                self.connections += 1
                self.listening.set()
                # A change may have been missed while (re)connecting: look once more.
                self.wake.set()
                self._serve(connection)
            except Exception as error:
                if not self._stopped.is_set():
                    logger.warning(
                        "task notifications lost (%s); polling until reconnected",
                        _one_line(error),
                    )
                    lost = True
            finally:
                self.listening.clear()
                self._connection = None
                _close_quietly(connection)
            if lost:
                # A connection that fails at once must not make us reconnect in a loop.
                if time.monotonic() - started > _LAST_RETRY:
                    retry = _FIRST_RETRY
                self._stopped.wait(retry)
                retry = min(retry * 2, _LAST_RETRY)

    def _connect(self) -> Any:
        cargs, cparams = driver_connect_arguments(self.engine)
        if not supports_notifications(self.engine):
            connection = sqlite3.connect(*cargs, **cparams)
            connection.isolation_level = None  # no implicit transactions: reads see commits
            return connection
        if self._conninfo is not None:
            # The URL says where; the engine's timeouts and session options still apply.
            options = {key: value for key, value in cparams.items() if key not in _WHERE}
            connection = psycopg.connect(self._conninfo, **{**options, "autocommit": True})
        elif behind_pooler(self.engine):
            raise _PooledWithoutDirectUrl
        else:
            connection = psycopg.connect(*cargs, **{**cparams, "autocommit": True})
        try:
            connection.execute(pg_sql.SQL("LISTEN {}").format(pg_sql.Identifier(TASKS_CHANNEL)))
        except BaseException:
            connection.close()
            raise
        return connection

    def _serve(self, connection: Any) -> None:
        if _is_psycopg(connection):
            self._listen(connection)
        else:
            self._watch(connection)

    def _listen(self, connection: psycopg.Connection[Any]) -> None:
        while not self._stopped.is_set():
            for _ in connection.notifies(timeout=_NOTIFY_WAIT, stop_after=1):
                self.wakeups += 1
                self.wake.set()
            if connection.closed:
                raise psycopg.OperationalError("the connection is closed")
            self._check_dropped()

    def _watch(self, connection: sqlite3.Connection) -> None:
        seen = change_counter(connection)
        interval = _FIRST_LOOK
        while not self._stopped.wait(interval):
            self._check_dropped()
            version = change_counter(connection)
            if version == seen:
                interval = min(interval * 2, _LAST_LOOK)
                continue
            seen = version
            self.wakeups += 1
            self.wake.set()
            interval = _FIRST_LOOK


class _PooledWithoutDirectUrl(Exception):
    """LISTEN is impossible: a transaction pooler is in the way and no direct URL given."""


def _close_quietly(connection: Any) -> None:
    try:
        connection.close()
    except Exception:
        logger.debug("closing the listener's connection failed", exc_info=True)


def _one_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__
