"""The worker: claims tasks, runs their handlers, stores their results.

One worker is one process: a main loop that claims and finishes tasks in batches, a
pool of handler threads (``concurrency``), a maintenance thread that sends heartbeats
and sweeps expired tasks, and a listener that wakes the loop when a task is deferred
(PostgreSQL) or the database changed (SQLite). Every write the worker makes about a
task is fenced on its claim (see ``aana.storage.queue_sql.held``): a worker that lost
its task cannot overwrite it.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType
from typing import TYPE_CHECKING, Any

from aana.exceptions.core import BaseException as AanaException
from aana.storage.models.task import Status
from aana.storage.repository.task import check_json
from aana.tasks.errors import ResultNotSerializableError, UnknownEndpointError
from aana.tasks.handlers import TaskContext
from aana.tasks.listener import Listener
from aana.tasks.manager import ClaimRequest, Job, QueueManager

if TYPE_CHECKING:
    from aana.configs.settings import TaskQueueSettings
    from aana.tasks.app import TaskQueueMixin

logger = logging.getLogger(__name__)

_FIRST_POLL = 0.005  # seconds; an idle worker without notifications backs off from here


@dataclass(frozen=True)
class WorkerOptions:
    """How a worker runs.

    Attributes:
        concurrency: Tasks run at once (handler threads).
        execution_timeout: Seconds a task may run before it is handed back or failed.
        heartbeat_timeout: Seconds without a heartbeat before a task is considered lost.
        max_retries: Attempts before a lost or retryable-failed task stays FAILED.
        maximum_active_tasks_per_user: ASSIGNED/RUNNING tasks one user may have at once
            (None: no limit).
        poll_interval: Longest wait between two looks at the queue when idle.
        shutdown_grace: Seconds running tasks get to finish after SIGTERM/SIGINT.
        listen: Wake when the database changes: PostgreSQL notifications, SQLite's
            change counter (polling remains the fallback).
        burst: Exit once no task can be claimed and none is running.

    """

    concurrency: int = 1
    execution_timeout: float = 600
    heartbeat_timeout: float = 60
    max_retries: int = 3
    maximum_active_tasks_per_user: int | None = 25
    poll_interval: float = 1.0
    shutdown_grace: float = 30.0
    listen: bool = True
    burst: bool = False

    @classmethod
    def from_settings(cls, queue_settings: TaskQueueSettings, **overrides: Any) -> WorkerOptions:
        """Options from ``Settings.task_queue``, with ``overrides`` (None values ignored)."""
        values: dict[str, Any] = {
            "execution_timeout": queue_settings.execution_timeout,
            "heartbeat_timeout": queue_settings.heartbeat_timeout,
            "max_retries": queue_settings.max_retries,
            "maximum_active_tasks_per_user": queue_settings.maximum_active_tasks_per_user,
        }
        values.update({key: value for key, value in overrides.items() if value is not None})
        return cls(**values)


Outcome = tuple[Job, Status | None, Any]
"""A job's end: COMPLETED or FAILED with the result, or None when it was not started."""


class Worker:
    """Runs an application's task handlers until stopped.

    Args:
        app: The application (an ``AanaSDK``) whose handlers run the tasks.
        options: How to run; by default from the application's ``settings.task_queue``.

    """

    def __init__(self, app: TaskQueueMixin, options: WorkerOptions | None = None) -> None:
        self.app = app
        self.options = options or WorkerOptions.from_settings(app.settings.task_queue)
        self.manager = QueueManager(app.settings.db_config.get_engine())
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._stopped_maintenance = threading.Event()
        self._jobs: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self._outcomes: queue.SimpleQueue[Outcome] = queue.SimpleQueue()
        self._unsaved: list[Outcome] = []
        self._running: dict[Any, Job] = {}
        self._running_lock = threading.Lock()
        self._grace_deadline = float("inf")
        self._listener = Listener(self.manager.engine, self._wake)
        self.processed = 0

    @property
    def stopping(self) -> bool:
        """Whether the worker was asked to stop."""
        return self._stopping.is_set()

    def stop(self, grace: float | None = None) -> None:
        """Stop claiming; running tasks get ``grace`` seconds (default: the option)."""
        grace = self.options.shutdown_grace if grace is None else grace
        self._grace_deadline = min(self._grace_deadline, time.monotonic() + grace)
        self._stopping.set()
        self._wake.set()

    def run(self) -> None:
        """Work until ``stop()``, SIGTERM or SIGINT (or an empty queue in burst mode)."""
        restore = self._install_signal_handlers()
        threads = [
            threading.Thread(target=self._handle_jobs, name=f"aana-task-{n}", daemon=True)
            for n in range(self.options.concurrency)
        ]
        maintenance = threading.Thread(target=self._maintain, name="aana-heartbeat", daemon=True)
        for thread in [*threads, maintenance]:
            thread.start()
        if self.options.listen:
            self._listener.start()
        logger.info("worker started: %d handler thread(s)", self.options.concurrency)
        try:
            self._loop()
        finally:
            self._shut_down()
            for _ in threads:
                self._jobs.put(None)
            self._stopped_maintenance.set()
            self._listener.stop()
            maintenance.join(timeout=5)
            restore()
            logger.info("worker stopped after %d task(s)", self.processed)

    # --- the main loop ---

    def _loop(self) -> None:
        wait = _FIRST_POLL
        while not self._stopping.is_set():
            self._wake.clear()
            self._drain_outcomes()
            free = self.options.concurrency - len(self._running) + len(self._unsaved)
            settled = bool(self._unsaved)
            claimed = self._settle(self._claim_request(free) if free > 0 else None)
            if claimed:
                wait = _FIRST_POLL
                continue
            # A task just finished may be claimable again (a retryable failure): look again.
            if self.options.burst and not self._running and not settled:
                return
            if self._listener.listening.is_set() or free <= 0:
                # Notifications or finishing tasks set the event; the timeout is a fallback.
                self._wake.wait(self.options.poll_interval)
            elif not self._wake.wait(wait):
                wait = min(wait * 2, self.options.poll_interval)

    def _claim_request(self, limit: int) -> ClaimRequest:
        options = self.options
        return ClaimRequest(
            limit,
            options.max_retries,
            self.app.retryable_exceptions,
            options.maximum_active_tasks_per_user,
        )

    def _drain_outcomes(self) -> None:
        while True:
            try:
                self._unsaved.append(self._outcomes.get_nowait())
            except queue.Empty:
                return

    def _settle(self, claim: ClaimRequest | None) -> int:
        """Store the handlers' results and claim more, in one transaction.

        Returns:
            How many tasks were claimed (and dispatched to handler threads).

        """
        outcomes = self._unsaved
        try:
            written, started = self.manager.settle(
                [(job.attempt, status, result) for job, status, result in outcomes], claim
            )
        except AanaException:
            # Nothing was written; the results are kept and stored on the next try.
            logger.exception("storing results or claiming tasks failed; retrying")
            self._stopping.wait(0.5)
            return 0
        for job, status, _ in outcomes:
            if status is not None and job.id not in written:
                logger.warning(
                    "result of task %s (attempt %d) not stored: the task was handed back "
                    "or claimed again meanwhile",
                    job.id,
                    job.attempt.number,
                )
        self.processed += sum(status is not None for _, status, _ in outcomes)
        self._unsaved = []
        with self._running_lock:
            for job, _, _ in outcomes:
                self._running.pop(job.id, None)
            for job in started:
                self._running[job.id] = job
        for job in started:
            self._jobs.put(job)
        return len(started)

    def _save_outcomes(self) -> None:
        self._drain_outcomes()
        self._settle(None)

    def _shut_down(self) -> None:
        """Let running tasks finish within the grace period, then hand the rest back."""
        self._stopping.set()
        if self._running:
            logger.info("stopping: waiting for %d running task(s)", len(self._running))
        while self._running and time.monotonic() < self._grace_deadline:
            self._save_outcomes()
            self._wake.wait(min(0.05, max(0.0, self._grace_deadline - time.monotonic())))
            self._wake.clear()
        self._save_outcomes()
        with self._running_lock:
            left = list(self._running.values())
            self._running.clear()
        if left:
            try:
                released = self.manager.release([job.attempt for job in left])
                logger.warning("handed back %d unfinished task(s)", len(released))
            except AanaException:
                logger.exception("handing back tasks failed; they expire and come back")

    # --- handler threads ---

    def _handle_jobs(self) -> None:
        loop = asyncio.new_event_loop()
        try:
            while (job := self._jobs.get()) is not None:
                if self._stopping.is_set():
                    self._outcomes.put((job, None, None))
                else:
                    self._outcomes.put(self._run_job(job, loop))
                self._wake.set()
        finally:
            loop.close()

    def _run_job(self, job: Job, loop: asyncio.AbstractEventLoop) -> Outcome:
        handler = self.app.task_handlers.get(job.endpoint)
        if handler is None:
            known = ", ".join(sorted(self.app.task_handlers)) or "none"
            error: BaseException = UnknownEndpointError(
                f"no handler is registered for endpoint {job.endpoint!r} (registered: {known})"
            )
            return job, Status.FAILED, failure(error)
        context = TaskContext(
            str(job.id), job.endpoint, job.attempt.number, job.user_id, self._reporter(job)
        )
        try:
            result = handler.call(job.data, context, loop)
        except Exception as error:
            logger.warning("task %s (%s) failed: %r", job.id, job.endpoint, error, exc_info=True)
            return job, Status.FAILED, failure(error)
        try:
            check_json(result, f"the result of endpoint {job.endpoint!r}")
        except TypeError as error:
            return job, Status.FAILED, failure(ResultNotSerializableError(str(error)))
        return job, Status.COMPLETED, result

    def _reporter(self, job: Job) -> Callable[[float], bool]:
        def report(progress: float) -> bool:
            return self.manager.report_progress(job.attempt, progress)

        return report

    # --- heartbeats and the expiry sweep ---

    def _maintain(self) -> None:
        options = self.options
        interval = max(0.05, min(options.heartbeat_timeout / 4, 10.0))
        while True:
            try:
                with self._running_lock:
                    attempts = [job.attempt for job in self._running.values()]
                self.manager.heartbeat(attempts)
                expired = self.manager.sweep(
                    options.execution_timeout, options.heartbeat_timeout, options.max_retries
                )
                if expired:
                    logger.warning("%d expired task(s) handed back or failed", len(expired))
                    self._wake.set()
            except AanaException:
                logger.exception("heartbeat or expiry sweep failed")
            if self._stopped_maintenance.wait(interval):
                return

    # --- signals ---

    def _install_signal_handlers(self) -> Callable[[], None]:
        if threading.current_thread() is not threading.main_thread():
            return lambda: None

        def on_signal(signum: int, _frame: FrameType | None) -> None:
            if self._stopping.is_set():
                logger.warning("second signal: handing back running tasks now")
                self.stop(grace=0)
            else:
                logger.info("signal %d: finishing running tasks, claiming no more", signum)
                self.stop()

        previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}

        def restore() -> None:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

        return restore


def failure(error: BaseException) -> dict[str, Any]:
    """The stored result of a failed task: the exception's class name and message."""
    return {"error": type(error).__name__, "message": str(error)}
