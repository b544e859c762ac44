"""Waking idle workers: PostgreSQL notifications, with polling as the fallback."""

from __future__ import annotations

import logging
import threading
from typing import Any

from sqlalchemy import Engine

from aana.storage.dialects import TASKS_CHANNEL, supports_notifications

logger = logging.getLogger(__name__)


class Listener:
    """Sets ``wake`` whenever a task is deferred (PostgreSQL ``LISTEN``).

    On a backend without notifications it does nothing, and the worker polls. If the
    listening connection fails, it reconnects; meanwhile the worker still polls.
    """

    def __init__(self, engine: Engine, wake: threading.Event) -> None:
        self.engine = engine
        self.wake = wake
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None
        self.listening = threading.Event()

    def start(self) -> None:
        """Listen in a background thread (only where the backend supports it)."""
        if not supports_notifications(self.engine):
            return
        self._thread = threading.Thread(target=self._run, name="aana-listener", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop listening; returns within about a second."""
        self._stopped.set()
        if self._thread is not None:
            self._thread.join(timeout=2)

    def _run(self) -> None:
        while not self._stopped.is_set():
            try:
                self._listen()
            except Exception:
                logger.warning("task notifications lost; polling until reconnected", exc_info=True)
                self.listening.clear()
                self._stopped.wait(1.0)

    def _listen(self) -> None:
        # A connection of the pool's own, never returned: it stays in autocommit, listening.
        raw = self.engine.raw_connection()
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
            raw.invalidate()
