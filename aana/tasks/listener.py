"""Waking idle workers: PostgreSQL notifications, SQLite's change counter.

Either way the worker still polls as the fallback, should the listener fail.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from sqlalchemy import Engine

from aana.storage.dialects import TASKS_CHANNEL, change_counter, supports_notifications

logger = logging.getLogger(__name__)

_FIRST_LOOK = 0.001  # seconds between looks at SQLite's change counter after a change ...
_LAST_LOOK = 0.05  # ... backing off to this while nothing changes


class Listener:
    """Sets ``wake`` whenever a task may have become claimable.

    On PostgreSQL it listens for the notification sent by every insert into the tasks
    table. SQLite has no notifications, but a connection can ask whether others have
    committed anything since it last asked (``PRAGMA data_version``, which reads
    shared memory, not the file): the listener asks every millisecond after a change,
    backing off to every 50 ms while nothing changes. If its connection fails, it
    reconnects; meanwhile the worker polls.
    """

    def __init__(self, engine: Engine, wake: threading.Event) -> None:
        self.engine = engine
        self.wake = wake
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None
        self.listening = threading.Event()

    def start(self) -> None:
        """Listen in a background thread."""
        self._thread = threading.Thread(target=self._run, name="aana-listener", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop listening; returns within about a second."""
        self._stopped.set()
        if self._thread is not None:
            self._thread.join(timeout=2)

    def _run(self) -> None:
        listen = self._listen if supports_notifications(self.engine) else self._watch
        while not self._stopped.is_set():
            try:
                listen()
            except Exception:
                logger.warning("task notifications lost; polling until reconnected", exc_info=True)
                self.listening.clear()
                self._stopped.wait(1.0)

    def _listen(self) -> None:
        # Kept while the listener runs: it must not take a slot of the worker's pool.
        raw = _detached(self.engine)  # left in autocommit, listening
        try:
            connection: Any = raw.driver_connection
            connection.autocommit = True
            connection.execute(f"LISTEN {TASKS_CHANNEL}")
            self.listening.set()
            # A notification may have been missed while connecting: look once more.
            self.wake.set()
            while not self._stopped.is_set():
                for _ in connection.notifies(timeout=0.5, stop_after=1):
                    self.wake.set()
        finally:
            raw.close()  # detached: really closed

    def _watch(self) -> None:
        pooled = _detached(self.engine)
        try:
            connection = pooled.driver_connection
            seen = change_counter(connection)
            self.listening.set()
            self.wake.set()
            interval = _FIRST_LOOK
            while not self._stopped.wait(interval):
                version = change_counter(connection)
                if version == seen:
                    interval = min(interval * 2, _LAST_LOOK)
                    continue
                seen = version
                self.wake.set()
                interval = _FIRST_LOOK
        finally:
            pooled.close()  # detached: really closed


def _detached(engine: Engine) -> Any:
    pooled = engine.raw_connection()
    pooled.detach()
    return pooled
