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
import json
import logging
import math
import os
import queue
import signal
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from types import FrameType
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError, OperationalError

from aana.exceptions.core import BaseException as AanaException
from aana.exceptions.db import (
    DatabaseConnectionException,
    InvalidTypeException,
    InvalidValueException,
)
from aana.storage.engine import EngineSpec, create_engine
from aana.storage.pooling import direct_conninfo
from aana.storage.queue_sql import Attempt
from aana.storage.tables import Status
from aana.tasks.errors import (
    QueueUnavailableError,
    ResultNotSerializableError,
    ResultNotStorableError,
    UnknownEndpointError,
)
from aana.tasks.handlers import TaskContext
from aana.tasks.listener import Listener
from aana.tasks.manager import ClaimRequest, Job, QueueManager
from aana.tasks.options import RetryPolicy
from aana.tasks.periodic import PeriodicScheduler, PeriodicTask
from aana.tasks.results import MAX_RESULT_BYTES, check_result, failure
from aana.tasks.supervisor import SAME_SIGNAL

__all__ = ["QueueUnavailableError", "Worker", "WorkerOptions", "failure"]

if TYPE_CHECKING:
    from aana.configs.settings import TaskQueueSettings
    from aana.tasks.app import TaskQueueMixin
    from aana.tasks.metrics import WorkerMetrics

logger = logging.getLogger(__name__)

_FIRST_POLL = 0.005  # seconds; an idle worker without notifications backs off from here
_PRESENCE_INTERVAL = 2.0  # seconds between two writes of the worker's own row, at most
_COMPACT_INTERVAL = 2.0  # seconds between two compactions of the task counts, at most
_PREFETCH_WAIT = 5.0  # seconds a prefetched task may wait for a thread (or a tenth of
# the execution timeout, if less) before it is handed back to the queue


@dataclass(frozen=True)
class WorkerOptions:
    """How a worker runs.

    Attributes:
        concurrency: Tasks run at once (handler threads).
        prefetch: Tasks claimed ahead of the handler threads, beyond those running, so
            a thread that finishes starts the next task without waiting for a claim,
            and each claim fetches more at once: for many short tasks. A prefetched
            task is RUNNING from its claim on (heartbeats keep it) and waits for a
            free thread. One that waits longer than 5 s (or a tenth of
            ``execution_timeout``), or is still waiting at shutdown, is handed back
            unstarted, its claim not counted against ``max_retries``; after such a
            hand-back the worker prefetches again only once a thread has nothing
            left to start. Keep 0 for long tasks.
        execution_timeout: Seconds a task may run before it is handed back or failed.
        heartbeat_timeout: Seconds without a heartbeat before a task is considered lost.
        max_retries: Attempts before a lost or retryable-failed task stays FAILED.
        maximum_active_tasks_per_user: ASSIGNED/RUNNING tasks one user may have at once
            (None: no limit).
        poll_interval: Longest wait between two looks at the queue when idle.
        shutdown_grace: Seconds running tasks get to finish after SIGTERM/SIGINT.
        listen: Wake when the database changes: PostgreSQL notifications, SQLite's
            change counter (polling remains the fallback).
        listen_url: A direct connection to PostgreSQL (a URL) for the notifications'
            listener, when the engine goes through a transaction pooler such as
            PgBouncer, where ``LISTEN`` does not work (None: the engine's settings;
            behind a pooler the worker then polls).
        burst: Exit once no task can be claimed and none is running; a claim that
            fails raises ``QueueUnavailableError`` instead.
        max_result_bytes: Largest result stored, in bytes of JSON text; a larger one
            ends its task FAILED with ``ResultNotStorableError``.
        metrics_port: Serve Prometheus metrics (task durations, outcomes) on this port
            (needs ``prometheus_client``, the ``api`` extra); None: no metrics.
        metrics_host: The address the metrics are served on.
        retry: The back-off of endpoints without a policy of their own (None: the
            application's ``settings.task_queue``).

    """

    concurrency: int = 1
    prefetch: int = 0
    execution_timeout: float = 600
    heartbeat_timeout: float = 60
    max_retries: int = 3
    maximum_active_tasks_per_user: int | None = 25
    poll_interval: float = 1.0
    shutdown_grace: float = 30.0
    listen: bool = True
    listen_url: str | None = None
    burst: bool = False
    max_result_bytes: int = MAX_RESULT_BYTES
    metrics_port: int | None = None
    metrics_host: str = "127.0.0.1"
    retry: RetryPolicy | None = None

    def __post_init__(self) -> None:
        for name, least in (("concurrency", 1), ("prefetch", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise InvalidTypeException(
                    f"{name} must be a whole number of tasks (an int), got {type(value).__name__}",
                    f"WorkerOptions.{name}",
                )
            if value < least:
                raise InvalidValueException(
                    f"{name} must be at least {least}, got {value!r}", f"WorkerOptions.{name}"
                )
        if self.listen_url:
            direct_conninfo(self.listen_url)  # a bad URL fails at start, not in a thread

    @classmethod
    def from_settings(cls, queue_settings: TaskQueueSettings, **overrides: Any) -> WorkerOptions:
        """Options from ``Settings.task_queue``, with ``overrides`` (None values ignored)."""
        values: dict[str, Any] = {
            "execution_timeout": queue_settings.execution_timeout,
            "heartbeat_timeout": queue_settings.heartbeat_timeout,
            "max_retries": queue_settings.max_retries,
            "maximum_active_tasks_per_user": queue_settings.maximum_active_tasks_per_user,
            "listen_url": queue_settings.listen_url,
            "retry": RetryPolicy.from_settings(queue_settings),
        }
        values.update({key: value for key, value in overrides.items() if value is not None})
        # 0 means no limit, in the settings as on the command line.
        values["maximum_active_tasks_per_user"] = values["maximum_active_tasks_per_user"] or None
        return cls(**values)

    def to_json(self) -> str:
        """These options as JSON, for another process (see ``from_json``)."""
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> WorkerOptions:
        """The options ``to_json`` wrote."""
        values = json.loads(text)
        if values.get("retry") is not None:
            values["retry"] = RetryPolicy(**values["retry"])
        return cls(**values)


Outcome = tuple[Job, Status | None, Any]
"""A job's end: COMPLETED or FAILED with the result, or None when it was not started."""


class Worker:
    """Runs an application's task handlers until stopped.

    Args:
        app: The application (an ``AanaSDK``) whose handlers run the tasks.
        options: How to run; by default from the application's ``settings.task_queue``.
        database: The database to work on; by default the application's
            ``settings.db_config``. The processes of ``aana worker --processes N`` are
            handed theirs (and their options), so they never load the settings.

    """

    def __init__(
        self,
        app: TaskQueueMixin,
        options: WorkerOptions | None = None,
        database: EngineSpec | None = None,
    ) -> None:
        self.app = app
        self.options = options or WorkerOptions.from_settings(app.settings.task_queue)
        self._own_engine = True
        self.manager = QueueManager(self._engine(database))
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._stopped_maintenance = threading.Event()
        self._jobs: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self._outcomes: queue.SimpleQueue[Outcome] = queue.SimpleQueue()
        self._unsaved: list[Outcome] = []
        # Every job claimed and not yet settled, by attempt (a task claimed again after
        # its attempt was lost is another entry); those not started yet, with the
        # time they were dispatched. Both under the lock.
        self._running: dict[Attempt, Job] = {}
        self._waiting: dict[Attempt, float] = {}
        self._running_lock = threading.Lock()
        self._prefetch_paused = False
        self._grace_deadline = float("inf")
        self._exit_timers: list[threading.Timer] = []
        self._listener = Listener(self.manager.engine, self._wake, self.options.listen_url)
        self.processed = 0
        self.metrics: WorkerMetrics | None = None
        self._hostname, self._pid = socket.gethostname(), os.getpid()
        self.worker_id = f"{self._hostname}:{self._pid}:{uuid.uuid4().hex[:8]}"
        self._reported_at = -math.inf
        self._compacted_at = -math.inf
        self._compaction_failing = False

    def _engine(self, database: EngineSpec | None) -> Engine:
        """The worker's engine: its own, unless the settings' already ends idle transactions.

        A worker's transactions are a few statements long. One left idle (its worker cut
        off mid-transaction) is ended by the server, releasing its rows, no later than
        the worker's tasks would expire anyway.
        """
        if database is None:
            settings = self.app.settings.db_config
            if settings.idle_in_transaction_timeout:
                self._own_engine = False
                return settings.get_engine()
            database = EngineSpec.of(settings)
        if not database.idle_in_transaction_timeout:
            limit = max(1, math.ceil(self.options.heartbeat_timeout))
            database = replace(database, idle_in_transaction_timeout=limit)
        return create_engine(database)

    def _retry_policy(self, endpoint: str | None) -> RetryPolicy:
        """The back-off of ``endpoint``: its own, else the options', else the settings'."""
        own = self.app.retry_policies.get(endpoint) if endpoint is not None else None
        return own or self.options.retry or self.app.retry_policy_for(None)

    @property
    def listener(self) -> Listener:
        """The listener that wakes this worker when tasks arrive."""
        return self._listener

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
        """Work until ``stop()``, SIGTERM or SIGINT (or an empty queue in burst mode).

        Raises:
            OSError: The metrics port (``metrics_port``) cannot be listened on.

        """
        self._start_metrics()  # first: a port in use stops the worker before it claims
        restore = self._install_signal_handlers()
        threads = [
            threading.Thread(target=self._handle_jobs, name=f"aana-task-{n}", daemon=True)
            for n in range(self.options.concurrency)
        ]
        maintenance = threading.Thread(target=self._maintain, name="aana-heartbeat", daemon=True)
        for thread in [*threads, maintenance]:
            thread.start()
        periodic = self._start_periodic()
        if self.options.listen:
            self._listener.start()
        logger.info("worker started: %d handler thread(s)", self.options.concurrency)
        try:
            self._loop()
        finally:
            try:
                self._shut_down()  # in burst mode, raises if the database is unreachable
            finally:
                self._clean_up(threads, maintenance, periodic, restore)

    def _clean_up(
        self,
        threads: list[threading.Thread],
        maintenance: threading.Thread,
        periodic: threading.Thread | None,
        restore: Callable[[], None],
    ) -> None:
        """Stop the threads, close what the worker opened, give back the signal handlers."""
        for _ in threads:
            self._jobs.put(None)
        self._stopped_maintenance.set()
        self._listener.stop()
        maintenance.join(timeout=5)
        if periodic is not None:
            periodic.join(timeout=5)
        try:
            self._forget_presence()
            if self._own_engine:
                self.manager.engine.dispose()
            if self.metrics is not None:
                self.metrics.close()
        finally:
            # Last, whatever those steps raised: until now a stop signal delivered
            # twice is still one request, and a step that hangs is still ended by
            # the exit timers; an embedding program gets its handlers back.
            for timer in self._exit_timers:
                timer.cancel()  # stopped in time
            logger.info("worker stopped after %d task(s)", self.processed)
            restore()

    def _start_metrics(self) -> None:
        port = self.options.metrics_port
        if port is None:
            return
        from aana.tasks.metrics import WorkerMetrics  # prometheus_client: only when asked

        self.metrics = WorkerMetrics()
        self.metrics.serve(port, self.options.metrics_host)
        logger.info("metrics served on http://%s:%d/metrics", self.options.metrics_host, port)

    # --- the main loop ---

    def _loop(self) -> None:
        wait = _FIRST_POLL
        while not self._stopping.is_set():
            self._wake.clear()
            self._drain_outcomes()
            self._hand_back_waiting(self._prefetch_wait)
            prefetch = 0 if self._prefetch_paused else self.options.prefetch
            free = self.options.concurrency + prefetch - len(self._running) + len(self._unsaved)
            settled = bool(self._unsaved)
            claimed = self._settle(self._claim_request(free) if free > 0 else None)
            if claimed:
                wait = _FIRST_POLL
                continue
            # A task just finished may be claimable again (a retryable failure): look again.
            if self.options.burst and not self._running and not settled:
                return
            # A task scheduled for later wakes nobody when it becomes due, nor does a
            # prefetched one that waited too long: wake for them.
            until_due = self._until_next_due() if free > 0 else None
            deadlines = [t for t in (until_due, self._until_waited_too_long()) if t is not None]
            if self._listener.listening.is_set() or free <= 0:
                # Notifications or finishing tasks set the event; the timeout is a fallback.
                self._wake.wait(min([self.options.poll_interval, *deadlines]))
            elif not self._wake.wait(min([wait, *deadlines])):
                wait = min(wait * 2, self.options.poll_interval)

    @property
    def _prefetch_wait(self) -> float:
        """Seconds a prefetched job may wait for a thread before it is handed back."""
        return min(_PREFETCH_WAIT, self.options.execution_timeout / 10)

    def _until_waited_too_long(self) -> float | None:
        """Seconds until the job waiting longest is to be handed back (None: none waits)."""
        if not self.options.prefetch:
            return None  # every job dispatched has a free thread
        with self._running_lock:
            oldest = min(self._waiting.values(), default=None)
        if oldest is None:
            return None
        return max(0.0, oldest + self._prefetch_wait - time.monotonic())

    def _hand_back_waiting(self, older_than: float | None) -> None:
        """Take back the dispatched jobs no thread started within ``older_than`` seconds.

        None: all of them (the worker stops). They are handed back in this turn,
        unstarted (their claim not counted); a thread that takes one from the queue
        later skips it. After jobs waited too long, prefetching pauses until a thread
        finds nothing left to start.
        """
        if older_than is not None and not self.options.prefetch:
            return  # every job dispatched has a free thread
        now = time.monotonic()
        with self._running_lock:
            stale = [
                attempt
                for attempt, since in self._waiting.items()
                if older_than is None or now - since >= older_than
            ]
            for attempt in stale:
                del self._waiting[attempt]
            self._unsaved.extend((self._running[attempt], None, None) for attempt in stale)
        if stale and older_than is not None:
            self._prefetch_paused = True
            logger.info(
                "handing back %d prefetched task(s) that waited %.1f s for a thread; "
                "prefetching resumes once a thread has nothing left to start",
                len(stale),
                older_than,
            )

    def _until_next_due(self) -> float | None:
        """Seconds until a task scheduled for later is due (None: none is, or unknown)."""
        try:
            return self.manager.seconds_to_next_due()
        except AanaException as error:  # the next claim reports the failure
            logger.debug("looking for scheduled tasks failed: %s", error)
            return None

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

        If that fails, the results are stored one by one (see ``_settle_one_by_one``):
        one result the database refuses never holds back the others.

        Returns:
            How many tasks were claimed (and dispatched to handler threads).

        Raises:
            QueueUnavailableError: In burst mode, claiming failed.

        """
        outcomes = self._unsaved
        reported: set[Any] = set()
        try:
            written, started = self.manager.settle(
                [(job.attempt, status, result) for job, status, result in outcomes],
                claim,
                self._retry_delays(outcomes),
            )
        except Exception as error:
            if not outcomes:
                self._claim_failed(error)
                return 0
            if _database_unavailable(error):
                # Nothing was refused: the database could not be reached (or was busy).
                # The outcomes are kept and stored once it answers again.
                if self.options.burst:
                    reason = f"storing results failed: {_one_line(error)}"
                    raise QueueUnavailableError(reason) from error
                logger.error(
                    "storing %d outcome(s) failed: %s; kept, retrying",
                    len(outcomes),
                    _one_line(error),
                )
                self._stopping.wait(0.5)
                return 0
            logger.warning(
                "storing %d outcome(s) together failed (%s); storing them one by one",
                len(outcomes),
                _one_line(error),
            )
            written, reported = self._settle_one_by_one(outcomes)
            started = []
        for job, status, _ in outcomes:
            if status is not None and job.id not in written and job.id not in reported:
                logger.warning(
                    "result of task %s (attempt %d) not stored: the task was handed back "
                    "or claimed again meanwhile",
                    job.id,
                    job.attempt.number,
                )
        self.processed += sum(status is not None for _, status, _ in outcomes)
        self._unsaved = []
        dispatched = time.monotonic()
        with self._running_lock:
            for job, _, _ in outcomes:
                self._running.pop(job.attempt, None)
            if self._prefetch_paused and not self._waiting:
                # A thread finished with nothing left to start (and none was handed
                # back in this turn): prefetch again.
                ended = [status for _, status, _ in outcomes]
                self._prefetch_paused = None in ended or not ended
            for job in started:
                self._running[job.attempt] = job
                self._waiting[job.attempt] = dispatched
        for job in started:
            self._jobs.put(job)
        return len(started)

    def _retry_delays(self, outcomes: list[Outcome]) -> dict[Any, float]:
        """Back-off of the failed tasks that will be retried, by task id."""
        retryable = self.app.retryable_exceptions
        delays: dict[Any, float] = {}
        for job, status, result in outcomes:
            if status != Status.FAILED or job.attempt.number >= self.options.max_retries:
                continue
            if isinstance(result, dict) and result.get("error") in retryable:
                delays[job.id] = self._retry_policy(job.endpoint).delay(job.attempt.number)
        return delays

    def _claim_failed(self, error: Exception) -> None:
        reason = f"claiming tasks failed: {_one_line(error)}"
        if self.options.burst:
            raise QueueUnavailableError(reason) from error
        if isinstance(error, AanaException):
            logger.error("%s; retrying", reason)
        else:
            logger.exception("%s; retrying", reason)
        self._stopping.wait(0.5)

    def _settle_one_by_one(self, outcomes: list[Outcome]) -> tuple[set[Any], set[Any]]:
        """Store each outcome alone; what the database still refuses is replaced.

        A refused result is stored as FAILED with ``ResultNotStorableError``. If even
        that fails, the attempt is dropped: no more heartbeats, so the expiry sweep
        hands it back after ``heartbeat_timeout`` (or fails it once ``max_retries``
        attempts are used). Nothing is retried forever.

        Returns:
            The ids whose outcome was written, and those already logged about.

        """
        written: set[Any] = set()
        reported: set[Any] = set()
        for job, status, result in outcomes:
            try:
                outcome = [(job.attempt, status, result)]
                delays = self._retry_delays([(job, status, result)])
                written |= self.manager.settle(outcome, None, delays)[0]
                continue
            except Exception as error:
                reason = _one_line(error)
            reported.add(job.id)
            if status is not None:
                logger.error(
                    "the database refused the result of task %s (%s); storing it as FAILED",
                    job.id,
                    reason,
                )
                refused = ResultNotStorableError(f"the database refused the result: {reason}")
                try:
                    settled = self.manager.settle([(job.attempt, Status.FAILED, failure(refused))])
                    written |= settled[0]
                    continue
                except Exception as error:
                    reason = _one_line(error)
            # Handing it back would let it be claimed again at once, ahead of the
            # queue: let its attempt expire instead (no more heartbeats), so the
            # sweep counts it against max_retries after heartbeat_timeout.
            logger.error(
                "task %s: its outcome could not be stored (%s); left to the expiry sweep",
                job.id,
                reason,
            )
        return written, reported

    def _save_outcomes(self) -> None:
        self._drain_outcomes()
        self._settle(None)

    def _shut_down(self) -> None:
        """Let running tasks finish within the grace period, then hand the rest back."""
        self._stopping.set()
        self._hand_back_waiting(None)  # not started yet: handed back at once
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
            # Those whose hand-back was not stored yet never started: not counted.
            unstarted = {job.attempt for job, status, _ in self._unsaved if status is None}
            try:
                released = self.manager.release(
                    [job.attempt for job in left if job.attempt not in unstarted]
                )
                released |= self.manager.release(
                    [job.attempt for job in left if job.attempt in unstarted], started=False
                )
                logger.warning("handed back %d unfinished task(s)", len(released))
            except AanaException:
                logger.exception("handing back tasks failed; they expire and come back")

    # --- handler threads ---

    def _handle_jobs(self) -> None:
        loop = asyncio.new_event_loop()
        try:
            while (job := self._jobs.get()) is not None:
                with self._running_lock:
                    if self._waiting.pop(job.attempt, None) is None:
                        continue  # handed back while it waited
                outcome: Outcome
                try:
                    started = time.perf_counter()
                    if self._stopping.is_set():
                        outcome = (job, None, None)
                    else:
                        outcome = self._run_job(job, loop)
                except BaseException as error:  # the thread outlives whatever a run raises
                    logger.exception("task %s (%s): running it failed", job.id, job.endpoint)
                    outcome = (job, Status.FAILED, failure(error))
                if self.metrics is not None and outcome[1] is not None:
                    seconds = time.perf_counter() - started
                    self.metrics.observe(job.endpoint, outcome[1].value, seconds)
                if loop.is_closed():  # a handler closed its thread's loop: a new one
                    loop = asyncio.new_event_loop()
                self._outcomes.put(outcome)
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
            str(job.id),
            job.endpoint,
            job.attempt.number,
            job.user_id,
            self._reporter(job),
            lambda: self.manager.should_abort(job.attempt),
        )
        try:
            result = handler.call(job.data, context, loop)
        except BaseException as error:  # even SystemExit: the task fails, the worker goes on
            logger.warning("task %s (%s) failed", job.id, job.endpoint, exc_info=True)
            return job, Status.FAILED, failure(error)
        try:
            what = f"the result of endpoint {job.endpoint!r}"
            check_result(result, what, self.options.max_result_bytes)
        except (ResultNotSerializableError, ResultNotStorableError) as error:
            logger.warning("task %s (%s) failed: %s", job.id, job.endpoint, error)
            return job, Status.FAILED, failure(error)
        return job, Status.COMPLETED, result

    def _reporter(self, job: Job) -> Callable[[float], bool]:
        def report(progress: float) -> bool:
            return self.manager.report_progress(job.attempt, progress)

        return report

    # --- periodic tasks ---

    def _start_periodic(self) -> threading.Thread | None:
        """Start the thread deferring the app's periodic tasks, if it has any."""
        periodic_tasks = list(getattr(self.app, "periodic_tasks", []))
        if not periodic_tasks or self.options.burst:
            return None
        manager = self.manager

        def defer(task: PeriodicTask, start: Any, key: str) -> bool:
            return manager.defer_periodic(task.endpoint, task.data, task.priority, start, key)

        scheduler = PeriodicScheduler(periodic_tasks, defer, manager.database_now)
        thread = threading.Thread(
            target=scheduler.run, args=(self._stopped_maintenance,), name="aana-periodic"
        )
        thread.daemon = True
        thread.start()
        return thread

    # --- heartbeats and the expiry sweep ---

    def _maintain(self) -> None:
        options = self.options
        interval = max(0.05, min(options.heartbeat_timeout / 4, 10.0))
        while True:
            try:
                with self._running_lock:
                    attempts = list(self._running)
                    started = len(attempts) - len(self._waiting)
                self.manager.heartbeat(attempts)
                self._report_presence(started)
                expired = self.manager.sweep(
                    options.execution_timeout,
                    options.heartbeat_timeout,
                    options.max_retries,
                    self._retry_policy(None),
                    self.app.retry_policies,
                )
                if expired:
                    logger.warning("%d expired task(s) handed back or failed", len(expired))
                    self._wake.set()
            except AanaException as error:  # the database failed: one line, retried
                logger.error("heartbeat or expiry sweep failed: %s", _one_line(error))
            except Exception:
                logger.exception("heartbeat or expiry sweep failed")
            self._compact_counts()
            if self._stopped_maintenance.wait(interval):
                return

    def _report_presence(self, running: int) -> None:
        """Write this worker's row of ``workers`` (for the dashboard), every few seconds."""
        now = time.monotonic()
        if now - self._reported_at < _PRESENCE_INTERVAL:
            return
        first = self._reported_at == -math.inf
        self.manager.report_worker(
            {
                "worker_id": self.worker_id,
                "worker_hostname": self._hostname,
                "worker_pid": self._pid,
                "worker_concurrency": self.options.concurrency,
                "worker_running": running,
                "worker_processed": self.processed,
            },
            first,
        )
        self._reported_at = now

    def _compact_counts(self) -> None:
        """Fold the task counts (``QueueManager.compact_counts``), at most every few seconds.

        Apart from the heartbeat and the sweep: a compaction that keeps failing (a role
        without DELETE on ``task_counts``, say) never holds them up. Logged once per
        outage; counting stays right without it, only slower.
        """
        now = time.monotonic()
        if now - self._compacted_at < _COMPACT_INTERVAL:
            return
        self._compacted_at = now
        try:
            self.manager.compact_counts()
        except Exception as error:
            if not self._compaction_failing:
                logger.warning("compacting the task counts failed: %s", _one_line(error))
            self._compaction_failing = True
        else:
            if self._compaction_failing:
                logger.info("compacting the task counts works again")
            self._compaction_failing = False

    def _forget_presence(self) -> None:
        try:
            self.manager.forget_worker(self.worker_id)
        except Exception as error:  # the row goes once it is old; stopping goes on
            logger.warning("removing this worker's row failed: %s", _one_line(error))

    # --- signals ---

    def _install_signal_handlers(self) -> Callable[[], None]:
        if threading.current_thread() is not threading.main_thread():
            return lambda: None

        first_at: list[float] = []

        def on_signal(signum: int, _frame: FrameType | None) -> None:
            now = time.monotonic()
            if not first_at:
                first_at.append(now)  # first, before any I/O: the handler may re-enter
            elif now - first_at[0] < SAME_SIGNAL:
                # One stop request delivered twice: to the process group (a terminal,
                # ``timeout``, systemd's control group) and forwarded by the supervisor.
                return
            if self._stopping.is_set():
                logger.warning("second signal: handing back running tasks now")
                self.stop(grace=0)
                self._exit_timers.append(_exit_after(_LAST_CALLS, "second signal"))
            else:
                logger.info("signal %d: finishing running tasks, claiming no more", signum)
                self.stop()
                # The database may be unreachable, and a call to it blocked until the
                # connection gives up: the process ends all the same. Tasks left running
                # expire and run again elsewhere.
                deadline = self.options.shutdown_grace + _LAST_CALLS
                self._exit_timers.append(_exit_after(deadline, "signal"))

        previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}

        def restore() -> None:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

        return restore


_LAST_CALLS = 15.0
"""Seconds a stopping worker may spend on its last database calls (storing results,
handing tasks back) before the process exits regardless."""


def _exit_after(seconds: float, why: str) -> threading.Timer:
    """End the process in ``seconds`` unless the timer is cancelled before."""

    def exit_now() -> None:
        logger.error("%s: still not stopped after %.0f s, exiting now", why, seconds)
        logging.shutdown()
        os._exit(1)

    timer = threading.Timer(seconds, exit_now)
    timer.daemon = True
    timer.start()
    return timer


def _database_unavailable(error: BaseException) -> bool:
    """Whether ``error`` (or what it was raised from) says the database could not be used.

    A lost or refused connection, or SQLite's lock held too long, as opposed to a
    statement the database refused (a value it cannot store, a trigger's exception).
    """
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, DatabaseConnectionException | OperationalError):
            return True
        if isinstance(seen, DBAPIError) and seen.connection_invalidated:
            return True
        seen = seen.__cause__
    return False


def _one_line(error: BaseException) -> str:
    """The first line of an error's message, for a log line or a stored reason."""
    try:
        lines = str(error).strip().splitlines()
    except Exception:
        lines = []
    return lines[0] if lines else type(error).__name__
