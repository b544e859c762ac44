"""The application's side of the task queue: registering handlers, deferring, reading."""

from __future__ import annotations

import asyncio
import functools
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from aana.storage.checks import json_text
from aana.tasks.handlers import Handler, RegisteredHandler
from aana.tasks.manager import QueueManager
from aana.tasks.options import RetryPolicy, check_dedupe_key, schedule
from aana.tasks.periodic import PeriodicTask, check_cron

if TYPE_CHECKING:
    from aana.configs.settings import Settings
    from aana.storage.models.task import TaskEntity
    from aana.storage.repository.task import TaskRepository


class TaskHandle:
    """What ``@app.task`` returns: the handler, still callable, that also defers tasks.

    ``handle(data)`` calls the function as before; ``handle.defer(data, **options)`` and
    ``handle.defer_many(items, **options)`` defer tasks to its endpoint, with the
    options of ``AanaSDK.defer`` / ``defer_many``.
    """

    def __init__(self, app: TaskQueueMixin, endpoint: str, func: Handler) -> None:
        """Wrap ``func``, registered for ``endpoint`` of ``app``."""
        self.app = app
        self.endpoint = endpoint
        self.func = func
        functools.update_wrapper(self, func)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Call the function itself (no task is deferred)."""
        return self.func(*args, **kwargs)

    def defer(self, data: Any, **options: Any) -> str:
        """Defer one task to this endpoint; see ``AanaSDK.defer``."""
        return self.app.defer(self.endpoint, data, **options)

    def defer_many(self, data_items: Iterable[Any], **options: Any) -> list[str]:
        """Defer one task per item to this endpoint; see ``AanaSDK.defer_many``."""
        return self.app.defer_many(self.endpoint, data_items, **options)

    async def defer_async(self, data: Any, **options: Any) -> str:
        """``defer`` for asyncio code (see ``AanaSDK.defer_async``)."""
        return await self.app.defer_async(self.endpoint, data, **options)

    async def defer_many_async(self, data_items: Iterable[Any], **options: Any) -> list[str]:
        """``defer_many`` for asyncio code (see ``AanaSDK.defer_many_async``)."""
        return await self.app.defer_many_async(self.endpoint, data_items, **options)

    def __repr__(self) -> str:
        return f"TaskHandle(endpoint={self.endpoint!r}, func={self.func!r})"


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
        self._retry_policies: dict[str, RetryPolicy] = {}

    @property
    def task_handlers(self) -> dict[str, RegisteredHandler]:
        """Handlers by endpoint name."""
        if not hasattr(self, "_task_handlers"):
            self._task_handlers = {}
        return self._task_handlers

    @property
    def retry_policies(self) -> dict[str, RetryPolicy]:
        """Retry policies given at registration, by endpoint name."""
        if not hasattr(self, "_retry_policies"):
            self._retry_policies = {}
        return self._retry_policies

    def retry_policy_for(self, endpoint: str | None) -> RetryPolicy:
        """The back-off of ``endpoint``: its own, else ``Settings.task_queue``'s."""
        if endpoint is not None and endpoint in self.retry_policies:
            return self.retry_policies[endpoint]
        return RetryPolicy.from_settings(self.settings.task_queue)

    def register_task(
        self, endpoint: str, handler: Handler, retry: RetryPolicy | None = None
    ) -> None:
        """Run ``handler`` for tasks deferred to ``endpoint``.

        The handler is called as ``handler(data)``, or ``handler(data, context)`` if it
        takes two positional arguments (``context`` is a ``TaskContext``, with
        ``report_progress`` and ``should_abort``). It may be a plain function or a
        coroutine function; its return value, stored as JSON, is the task's result.
        ``retry`` replaces the back-off of ``Settings.task_queue`` for this endpoint.

        Raises:
            ValueError: Another handler is registered for ``endpoint``.
            TypeError: ``retry`` is not a ``RetryPolicy``.

        """
        if not endpoint:
            raise ValueError("an endpoint name must not be empty")
        if retry is not None and not isinstance(retry, RetryPolicy):
            raise TypeError(f"retry must be a RetryPolicy, got {type(retry).__name__}")
        func = handler.func if isinstance(handler, TaskHandle) else handler
        existing = self.task_handlers.get(endpoint)
        if existing is not None and existing.func is not func:
            raise ValueError(f"endpoint {endpoint!r} already has a handler: {existing.func!r}")
        self.task_handlers[endpoint] = RegisteredHandler.of(func)
        if retry is not None:
            self.retry_policies[endpoint] = retry

    def task(
        self, endpoint: str | None = None, retry: RetryPolicy | None = None
    ) -> Callable[[Handler], TaskHandle]:
        """Decorator form of ``register_task``; the endpoint defaults to the function's name.

        Returns a ``TaskHandle``: still callable as the function, with ``.defer`` and
        ``.defer_many``.
        """

        def register(handler: Handler) -> TaskHandle:
            name = endpoint or handler.__name__
            self.register_task(name, handler, retry)
            return TaskHandle(self, name, handler)

        return register

    @property
    def periodic_tasks(self) -> list[PeriodicTask]:
        """Periodic tasks registered with ``periodic``."""
        if not hasattr(self, "_periodic_tasks"):
            self._periodic_tasks: list[PeriodicTask] = []
        return self._periodic_tasks

    def periodic(
        self,
        cron: str,
        endpoint: str | None = None,
        data: Any = None,
        priority: int = 0,
        retry: RetryPolicy | None = None,
    ) -> Callable[[Handler], TaskHandle]:
        """Defer a task to ``endpoint`` once per period of ``cron`` (UTC, database clock).

        As a decorator it also registers the function as the endpoint's handler (the
        endpoint defaults to its name); ``app.periodic(cron, endpoint=...)`` alone
        schedules an endpoint whose handler is registered elsewhere. Workers defer
        exactly one task per period between them; see ``aana.tasks.periodic``.

        Raises:
            InvalidCronExpressionError: ``cron`` is not a cron expression (a
                ``ValueError``), raised here, at registration.
            TypeError: ``data`` is not JSON.

        """
        check_cron(cron)
        json_text(data, "periodic task data")

        def add(name: str) -> None:
            if any(p.endpoint == name and p.cron == cron for p in self.periodic_tasks):
                return
            self.periodic_tasks.append(PeriodicTask(cron, name, data, priority))

        if endpoint is not None:
            add(endpoint)

        def register(handler: Handler) -> TaskHandle:
            name = endpoint or handler.__name__
            self.register_task(name, handler, retry)
            add(name)
            return TaskHandle(self, name, handler)

        return register

    def task_queue(self) -> QueueManager:
        """The queue manager on the configured database, built again only if it changes."""
        engine = self.settings.db_config.get_engine()
        manager: QueueManager | None = getattr(self, "_task_queue", None)
        if manager is None or manager.engine is not engine:
            manager = self._task_queue = QueueManager(engine)
        return manager

    def defer(
        self,
        endpoint: str,
        data: Any,
        priority: int = 0,
        user_id: str | None = None,
        schedule_at: datetime | None = None,
        schedule_in: float | timedelta | None = None,
        dedupe_key: str | None = None,
    ) -> str:
        """Store a task for a worker to run; returns its id.

        The endpoint need not have a handler in this process: an API process may defer
        tasks that workers elsewhere run.

        Args:
            endpoint: The endpoint that runs the task.
            data: The task's input (JSON).
            priority: Higher runs first.
            user_id: Who deferred the task (for per-user limits and listings).
            schedule_at: An aware datetime: the task is claimable from then on, by the
                database clock.
            schedule_in: Seconds (or a timedelta) from now, by the database clock.
            dedupe_key: While an unfinished task has this key, its id is returned and
                nothing new is stored.

        Raises:
            TypeError: ``data`` cannot be stored as JSON; nothing is written.
            ValueError: ``schedule_at`` is naive, both ``schedule_at`` and
                ``schedule_in`` are given, ``schedule_in`` is negative, or
                ``dedupe_key`` is empty or too long; nothing is written.

        """
        when = schedule(schedule_at, schedule_in)
        key = check_dedupe_key(dedupe_key)
        ids = self.task_queue().defer(endpoint, [data], priority, user_id, when, key)
        return str(ids[0])

    def defer_many(
        self,
        endpoint: str,
        data_items: Iterable[Any],
        priority: int = 0,
        user_id: str | None = None,
        schedule_at: datetime | None = None,
        schedule_in: float | timedelta | None = None,
    ) -> list[str]:
        """Store one task per item of ``data_items`` in one round trip; returns their ids.

        ``schedule_at`` / ``schedule_in`` apply to every task, as in ``defer``.

        Raises:
            TypeError: An item cannot be stored as JSON; nothing is written.
            ValueError: Bad ``schedule_at`` / ``schedule_in`` (see ``defer``).

        """
        when = schedule(schedule_at, schedule_in)
        items: Sequence[Any] = list(data_items)
        ids = self.task_queue().defer(endpoint, items, priority, user_id, when)
        return [str(task_id) for task_id in ids]

    # The asyncio twins run the same code in a worker thread: one implementation, and
    # the event loop never waits on the database.

    async def defer_async(self, endpoint: str, data: Any, **options: Any) -> str:
        """``defer``, awaited: same options, same errors."""
        return await asyncio.to_thread(functools.partial(self.defer, endpoint, data, **options))

    async def defer_many_async(
        self, endpoint: str, data_items: Iterable[Any], **options: Any
    ) -> list[str]:
        """``defer_many``, awaited: same options, same errors."""
        items = list(data_items)
        return await asyncio.to_thread(
            functools.partial(self.defer_many, endpoint, items, **options)
        )

    async def get_task_async(self, task_id: str | uuid.UUID) -> TaskEntity:
        """``get_task``, awaited."""
        return await asyncio.to_thread(self.get_task, task_id)

    async def cancel_task_async(self, task_id: str | uuid.UUID) -> TaskEntity:
        """``cancel_task``, awaited."""
        return await asyncio.to_thread(self.cancel_task, task_id)

    def cancel_task(self, task_id: str | uuid.UUID) -> TaskEntity:
        """Cancel a task: at once if it waits, when its handler ends if it runs.

        Raises:
            NotFoundException: No such task.
            TaskAlreadyFinishedException: The task already ended; nothing changed.

        """
        with self._repository() as tasks:
            return tasks.cancel(task_id)

    def get_task(self, task_id: str | uuid.UUID) -> TaskEntity:
        """The task with its status, progress and result.

        Raises:
            NotFoundException: No such task.

        """
        with self._repository() as tasks:
            return tasks.read(task_id)

    @contextmanager
    def _repository(self) -> Iterator[TaskRepository]:
        # The ORM loads here, on first use: a worker process never needs it.
        from sqlalchemy.orm import Session

        from aana.storage.repository.task import TaskRepository

        with Session(self.settings.db_config.get_engine(), expire_on_commit=False) as session:
            yield TaskRepository(session)
