"""Options of a deferred task: when it is due, its de-duplication key, its retry policy.

Checked before anything is written, so bad input raises a typed exception naming the
option and the fix, and leaves the queue untouched.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, NamedTuple

from aana.exceptions.db import InvalidTypeException, InvalidValueException
from aana.storage import checks
from aana.storage.tables import DEDUPE_KEY_LENGTH

if TYPE_CHECKING:
    from aana.configs.settings import TaskQueueSettings


class Schedule(NamedTuple):
    """When a task is due: at ``at`` (aware) if given, else ``delay`` seconds from now.

    ``delay`` is added to the database clock when the task is stored.
    """

    at: datetime | None
    delay: float


AT_ONCE = Schedule(None, 0.0)
"""Due as soon as stored."""


def schedule(
    schedule_at: datetime | None = None, schedule_in: float | timedelta | None = None
) -> Schedule:
    """The due time of a task from ``defer``'s options (neither: due at once).

    Raises:
        InvalidValueException: Both are given, ``schedule_at`` is naive, or
            ``schedule_in`` is negative, NaN or infinite (a ``ValueError``).
        InvalidTypeException: One has the wrong type (a ``TypeError``).

    """
    if schedule_at is not None and schedule_in is not None:
        raise InvalidValueException(
            "give schedule_at (a time) or schedule_in (a delay), not both", "schedule_at"
        )
    if schedule_at is not None:
        if not isinstance(schedule_at, datetime):
            raise InvalidTypeException(
                f"schedule_at must be a datetime, got {type(schedule_at).__name__}", "schedule_at"
            )
        if schedule_at.tzinfo is None or schedule_at.utcoffset() is None:
            raise InvalidValueException(
                f"schedule_at {schedule_at.isoformat()} is a naive datetime; give it a time "
                "zone, e.g. datetime.now(timezone.utc) + timedelta(minutes=5)",
                "schedule_at",
            )
        return Schedule(schedule_at, 0.0)
    if schedule_in is None:
        return AT_ONCE
    if isinstance(schedule_in, timedelta):
        seconds = schedule_in.total_seconds()
    elif isinstance(schedule_in, int | float) and not isinstance(schedule_in, bool):
        seconds = float(schedule_in)
    else:
        raise InvalidTypeException(
            "schedule_in must be seconds (a number) or a timedelta, got "
            f"{type(schedule_in).__name__}",
            "schedule_in",
        )
    if not math.isfinite(seconds) or seconds < 0:
        raise InvalidValueException(
            f"schedule_in must be a finite delay of 0 seconds or more, got {schedule_in!r}; "
            "to run a task at once, leave it out",
            "schedule_in",
        )
    return Schedule(None, seconds)


def check_dedupe_key(dedupe_key: str | None) -> str | None:
    """``dedupe_key`` if it can be stored.

    Raises:
        InvalidTypeException: It is not a string.
        InvalidValueException: It is empty, longer than the column, or holds a NUL
            character or a lone surrogate.

    """
    if dedupe_key is None:
        return None
    if not isinstance(dedupe_key, str):
        raise InvalidTypeException(
            f"dedupe_key must be a string, got {type(dedupe_key).__name__}", "tasks.dedupe_key"
        )
    if not dedupe_key:
        raise InvalidValueException(
            "dedupe_key must not be empty; leave it out (None) for no de-duplication",
            "tasks.dedupe_key",
        )
    if len(dedupe_key) > DEDUPE_KEY_LENGTH:
        raise InvalidValueException(
            f"dedupe_key is {len(dedupe_key)} characters long; at most {DEDUPE_KEY_LENGTH} "
            "fit: use a shorter key, e.g. a hash of the long one",
            "tasks.dedupe_key",
        )
    return checks.check_text(dedupe_key, "tasks.dedupe_key")


@dataclass(frozen=True)
class RetryPolicy:
    """How long a task waits before its next attempt after a retryable failure.

    The attempt ``n`` that failed is followed by a wait of
    ``min(cap, base * 2 ** (n - 1))`` seconds, less a random part of up to ``jitter``
    of it (0: none; 1: anything from 0 to the full wait), so tasks that failed together
    do not come back together.

    Attributes:
        base: Seconds to wait after the first attempt.
        cap: Longest wait, in seconds.
        jitter: Fraction of the wait drawn at random, from 0 to 1.

    """

    base: float = 1.0
    cap: float = 300.0
    jitter: float = 0.5

    @classmethod
    def from_settings(cls, queue_settings: TaskQueueSettings) -> RetryPolicy:
        """The back-off of ``Settings.task_queue`` (``retry_base_delay`` ...)."""
        return cls(
            queue_settings.retry_base_delay,
            queue_settings.retry_max_delay,
            queue_settings.retry_jitter,
        )

    def __post_init__(self) -> None:
        """Refuse negative, infinite or out-of-range values."""
        for name in ("base", "cap"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
                raise InvalidValueException(
                    f"RetryPolicy.{name} must be a finite number of seconds >= 0, got {value!r}",
                    f"RetryPolicy.{name}",
                )
        if not isinstance(self.jitter, int | float) or not 0 <= self.jitter <= 1:
            raise InvalidValueException(
                f"RetryPolicy.jitter must be a fraction from 0 to 1, got {self.jitter!r}",
                "RetryPolicy.jitter",
            )

    def delay(self, attempt: int, draw: float | None = None) -> float:
        """Seconds to wait after attempt number ``attempt`` (1 for the first) failed."""
        exponential = min(float(self.cap), float(self.base) * 2.0 ** min(max(attempt - 1, 0), 62))
        fraction = random.random() if draw is None else draw  # noqa: S311 - not a secret
        return exponential * (1.0 - self.jitter * fraction)
