"""Periodic tasks: one task per period of a cron schedule, however many workers run.

Every worker with periodic tasks registered runs a scheduler thread. At each tick it
defers the task of the latest period that has begun, with a key made of the endpoint
and the period's start (``period_key``); a unique index on that column lets exactly one
insert per period succeed, whichever worker makes it, on any machine. No lock is held:
the other inserts do nothing (``ON CONFLICT DO NOTHING``). Periods missed while no
worker ran are not caught up one by one: a worker that starts defers the latest only.

Cron expressions are parsed by ``cronsim`` (5 fields, or 6 with seconds first), read in
UTC against the database clock.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from cronsim import CronSim, CronSimError

from aana.exceptions.db import InvalidValueException
from aana.storage.tables import DEDUPE_KEY_LENGTH

logger = logging.getLogger(__name__)


class InvalidCronExpressionError(InvalidValueException):
    """A periodic task's cron expression cannot be parsed (a ``ValueError``)."""


def check_cron(cron: str) -> str:
    """``cron`` if it is a valid cron expression.

    Raises:
        InvalidCronExpressionError: It is not; the message says why and shows the form.

    """
    if not isinstance(cron, str):
        raise InvalidCronExpressionError(
            f"cron must be a string such as '*/5 * * * *', got {type(cron).__name__}", "cron"
        )
    try:
        next(CronSim(cron, datetime.now(UTC)))
    except (CronSimError, StopIteration, ValueError) as error:
        raise InvalidCronExpressionError(
            f"invalid cron expression {cron!r}: {error}. Use 5 fields (minute hour "
            "day-of-month month day-of-week, e.g. '*/5 * * * *'), or 6 with seconds first.",
            "cron",
        ) from None
    return cron


@dataclass(frozen=True)
class PeriodicTask:
    """A task deferred once per period of ``cron`` to ``endpoint`` with ``data``."""

    cron: str
    endpoint: str
    data: Any = None
    priority: int = 0

    def latest_start(self, now: datetime) -> datetime:
        """The start of the latest period begun at ``now`` (``now`` itself if on a tick)."""
        if now.microsecond == 0 and _on_tick(self.cron, now):
            return now
        return next(CronSim(self.cron, now, reverse=True))

    def next_start(self, now: datetime) -> datetime:
        """The start of the next period after ``now``."""
        return next(CronSim(self.cron, now))

    def period_key(self, start: datetime) -> str:
        """The key of the period beginning at ``start``: unique per endpoint and period."""
        key = f"{self.endpoint}@{start.astimezone(UTC).isoformat()}"
        if len(key) <= DEDUPE_KEY_LENGTH:
            return key
        return "sha256:" + hashlib.sha256(key.encode()).hexdigest()


def _on_tick(cron: str, moment: datetime) -> bool:
    return next(CronSim(cron, moment - timedelta(seconds=1))) == moment


class PeriodicScheduler:
    """Defers the periodic tasks of an application, one per period.

    Args:
        periodic_tasks: What to defer.
        defer: Stores one task for a period, unless its key exists:
            ``defer(task, period_start, key) -> bool`` (whether it was stored).
        clock: The current time; by default the database clock.

    """

    def __init__(
        self,
        periodic_tasks: Sequence[PeriodicTask],
        defer: Callable[[PeriodicTask, datetime, str], bool],
        clock: Callable[[], datetime],
    ) -> None:
        self.periodic_tasks = list(periodic_tasks)
        self._defer = defer
        self._clock = clock

    def run_once(self, now: datetime | None = None) -> list[str]:
        """Defer the latest period of each task begun at ``now``; returns the keys stored."""
        now = self._clock() if now is None else now
        stored = []
        for periodic in self.periodic_tasks:
            start = periodic.latest_start(now)
            key = periodic.period_key(start)
            if self._defer(periodic, start, key):
                stored.append(key)
        return stored

    def seconds_to_next(self, now: datetime) -> float:
        """Seconds from ``now`` to the next period start of any task."""
        upcoming = min(periodic.next_start(now) for periodic in self.periodic_tasks)
        return max(0.0, (upcoming - now).total_seconds())

    def run(self, stopped: threading.Event, longest_wait: float = 60.0) -> None:
        """Defer each period as it begins until ``stopped`` is set; errors are logged."""
        while not stopped.is_set():
            wait = 1.0
            try:
                now = self._clock()
                for key in self.run_once(now):
                    logger.info("periodic task deferred: %s", key)
                # A little past the tick, so the clock read then is surely on or after it.
                wait = min(self.seconds_to_next(now) + 0.005, longest_wait)
            except Exception as error:  # the database failed: try again shortly
                logger.error("deferring periodic tasks failed: %s", error)
            stopped.wait(wait)
