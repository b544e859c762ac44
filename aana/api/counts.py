"""Task counts per endpoint and status, read at most once per period.

The counts come from ``task_counts``, which the database keeps (a read of a few rows);
still, however many pages are open and however often Prometheus scrapes, they are read
at most once per ``seconds``.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING

from sqlalchemy.orm import Session

from aana.exceptions.core import BaseException as AanaException
from aana.storage.repository.task import TaskRepository, status_totals

if TYPE_CHECKING:
    from aana.sdk import AanaSDK

logger = logging.getLogger(__name__)


class QuietCompaction:
    """Folds the task counts before a count (in case no worker runs), logging a failure once.

    Counting works without it, only slower: a role that may not write ``task_counts``
    (a read-only one, a replica) still gets its counts. One per router or counter.
    """

    def __init__(self) -> None:
        self.failed = False

    def __call__(self, repository: TaskRepository) -> None:
        """Compact through ``repository``; a failure is logged the first time only."""
        try:
            repository.compact_counts()
        except AanaException as error:
            if not self.failed:
                logger.warning("compacting the task counts failed (counting goes on): %s", error)
            self.failed = True


class CachedCounts:
    """Tasks per endpoint and status of ``app``'s database, at most ``seconds`` old."""

    def __init__(self, app: AanaSDK, seconds: float) -> None:
        self.app = app
        self.seconds = seconds
        self._lock = threading.Lock()
        self._read_at = -float("inf")
        self._counts: dict[str, dict[str, int]] = {}
        self._compact = QuietCompaction()

    def by_endpoint(self) -> dict[str, dict[str, int]]:
        """``{endpoint: {status value: count}}`` (statuses without tasks left out)."""
        with self._lock:  # concurrent readers wait for one query instead of each running it
            if time.monotonic() - self._read_at >= self.seconds:
                engine = self.app.settings.db_config.get_engine()
                with Session(engine) as session:
                    repository = TaskRepository(session)
                    self._compact(repository)
                    self._counts = repository.count_by_endpoint()
                self._read_at = time.monotonic()
            return self._counts

    def by_status(self) -> dict[str, int]:
        """Tasks per status value plus ``"total"``, as ``TaskRepository.count()``."""
        return status_totals(self.by_endpoint())
