"""Task handlers: how a registered function is called with a task's data."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

Handler = Callable[..., Any]
"""``handler(data)`` or ``handler(data, context)``; a plain function or a coroutine."""


@dataclass
class TaskContext:
    """What a handler knows of the task it runs, and how it reports progress.

    Attributes:
        task_id: The task's id.
        endpoint: The endpoint the task was deferred to.
        attempt: Which claim of the task this is (1 for the first).
        user_id: Who deferred the task, if known.

    """

    task_id: str
    endpoint: str
    attempt: int
    user_id: str | None
    _report: Callable[[float], bool] = field(repr=False)
    _abort: Callable[[], bool] = field(repr=False, default=lambda: False)

    def report_progress(self, progress: float) -> bool:
        """Store the task's progress, a fraction from 0 to 1 (also a heartbeat).

        Returns:
            False if this attempt no longer holds the task (it was handed back or
            claimed again), or the task was cancelled: the handler should stop; its
            result will not be stored (a cancelled task ends CANCELLED).

        """
        if not 0.0 <= progress <= 1.0:
            raise ValueError(f"progress must be between 0 and 1, got {progress!r}")
        return self._report(float(progress))

    def should_abort(self) -> bool:
        """Whether the handler should stop now.

        True once the task was cancelled (``cancel_task``) or this attempt no longer
        holds it. Each call is one short query: call it between steps of the work.
        """
        return self._abort()


@dataclass(frozen=True)
class RegisteredHandler:
    """A handler and how to call it, worked out once at registration."""

    func: Handler
    wants_context: bool

    @classmethod
    def of(cls, func: Handler) -> RegisteredHandler:
        """Inspect ``func``: a second positional parameter receives the context."""
        if not callable(func):
            raise TypeError(f"a task handler must be callable, got {func!r}")
        try:
            parameters = list(inspect.signature(func).parameters.values())
        except (TypeError, ValueError):  # builtins without a signature get the data only
            parameters = []
        positional = [
            p
            for p in parameters
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL)
        ]
        wants_context = len(positional) >= 2 or any(p.kind is p.VAR_POSITIONAL for p in positional)
        return cls(func, wants_context)

    def call(self, data: Any, context: TaskContext, loop: asyncio.AbstractEventLoop) -> Any:
        """Run the handler to the end in this thread; coroutines run on ``loop``."""
        result = self.func(data, context) if self.wants_context else self.func(data)
        if inspect.isawaitable(result):
            return loop.run_until_complete(_awaited(result))
        return result


async def _awaited(awaitable: Any) -> Any:
    return await awaitable
