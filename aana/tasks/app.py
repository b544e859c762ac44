"""The application's side of the task queue: registering handlers, deferring, reading."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy.orm import Session

from aana.storage.models.task import TaskEntity
from aana.storage.repository.task import TaskRepository
from aana.tasks.handlers import Handler, RegisteredHandler
from aana.tasks.manager import QueueManager

if TYPE_CHECKING:
    from aana.configs.settings import Settings

H = TypeVar("H", bound=Handler)


def exception_names(exceptions: Iterable[type[BaseException] | str] | None) -> tuple[str, ...]:
    """Class names of ``exceptions``, as a failed task's ``result["error"]`` stores them."""
    return tuple(e if isinstance(e, str) else e.__name__ for e in exceptions or ())


class TaskQueueMixin:
    """Task-queue methods of ``AanaSDK``: register handlers, defer tasks, read them."""

    retryable_exceptions: tuple[str, ...] = ()

    @property
    def settings(self) -> Settings:
        """The settings in force (provided by the application object)."""
        raise NotImplementedError

    def init_task_queue(
        self, retryable_exceptions: Iterable[type[BaseException] | str] | None = None
    ) -> None:
        """Start with no handlers; ``retryable_exceptions`` are classes or class names."""
        self.retryable_exceptions = exception_names(retryable_exceptions)
        self._task_handlers: dict[str, RegisteredHandler] = {}

    @property
    def task_handlers(self) -> dict[str, RegisteredHandler]:
        """Handlers by endpoint name."""
        if not hasattr(self, "_task_handlers"):
            self._task_handlers = {}
        return self._task_handlers

    def register_task(self, endpoint: str, handler: Handler) -> None:
        """Run ``handler`` for tasks deferred to ``endpoint``.

        The handler is called as ``handler(data)``, or ``handler(data, context)`` if it
        takes two positional arguments (``context`` is a ``TaskContext``, with
        ``report_progress``). It may be a plain function or a coroutine function; its
        return value, stored as JSON, is the task's result.

        Raises:
            ValueError: Another handler is registered for ``endpoint``.

        """
        if not endpoint:
            raise ValueError("an endpoint name must not be empty")
        existing = self.task_handlers.get(endpoint)
        if existing is not None and existing.func is not handler:
            raise ValueError(f"endpoint {endpoint!r} already has a handler: {existing.func!r}")
        self.task_handlers[endpoint] = RegisteredHandler.of(handler)

    def task(self, endpoint: str | None = None) -> Callable[[H], H]:
        """Decorator form of ``register_task``; the endpoint defaults to the function's name."""

        def register(handler: H) -> H:
            self.register_task(endpoint or handler.__name__, handler)
            return handler

        return register

    def task_queue(self) -> QueueManager:
        """The queue manager on the configured database, built again only if it changes."""
        engine = self.settings.db_config.get_engine()
        manager: QueueManager | None = getattr(self, "_task_queue", None)
        if manager is None or manager.engine is not engine:
            manager = self._task_queue = QueueManager(engine)
        return manager

    def defer(self, endpoint: str, data: Any, priority: int = 0, user_id: str | None = None) -> str:
        """Store a task for a worker to run; returns its id.

        Raises:
            TypeError: ``data`` cannot be stored as JSON; nothing is written.

        """
        return str(self.task_queue().defer(endpoint, [data], priority, user_id)[0])

    def defer_many(
        self,
        endpoint: str,
        data_items: Iterable[Any],
        priority: int = 0,
        user_id: str | None = None,
    ) -> list[str]:
        """Store one task per item of ``data_items`` in one round trip; returns their ids.

        Raises:
            TypeError: An item cannot be stored as JSON; nothing is written.

        """
        items: Sequence[Any] = list(data_items)
        return [str(i) for i in self.task_queue().defer(endpoint, items, priority, user_id)]

    def get_task(self, task_id: str | uuid.UUID) -> TaskEntity:
        """The task with its status, progress and result.

        Raises:
            NotFoundException: No such task.

        """
        with Session(self.settings.db_config.get_engine(), expire_on_commit=False) as session:
            return TaskRepository(session).read(task_id)
