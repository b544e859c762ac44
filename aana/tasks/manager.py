"""The queue manager: the worker's and the application's operations on the tasks table.

Each method is one short transaction of statements from ``aana.storage.queue_sql``, run
as SQLAlchemy Core on a ``Connection`` (its compiled cache makes a repeated statement
cheap), not through ORM objects: a worker writes tens of thousands of rows a minute and
needs none of the unit of work's bookkeeping. A method of one statement runs it in
autocommit: one round trip.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, Update, select

from aana.storage import dialects, queue_sql
from aana.storage.checks import json_text
from aana.storage.dialects import utcnow
from aana.storage.errors import translate_errors
from aana.storage.queue_driver_sqlite import DriverTurn
from aana.storage.queue_sql import FINISHED, Attempt, ClaimRequest
from aana.storage.rows import insert_rows
from aana.storage.tables import Status, tasks
from aana.tasks.options import AT_ONCE, Schedule

__all__ = ["Attempt", "ClaimRequest", "Job", "QueueManager"]


@dataclass(frozen=True)
class Job:
    """A claimed task, as a worker holds it."""

    attempt: Attempt
    endpoint: str
    data: Any
    user_id: str | None

    @property
    def id(self) -> uuid.UUID:
        """The task's id."""
        return self.attempt.task_id


class QueueManager:
    """Defer, claim, start, finish, heartbeat, hand back and sweep tasks.

    Args:
        engine: The engine of the database holding the ``tasks`` table.

    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        dialect = engine.dialect
        self._writer = engine.execution_options(**dialects.write_options(dialect))
        self._autocommit = engine.execution_options(**dialects.autocommit_options(dialect))
        # A worker's turn as one statement committed by itself (a claim alone, or
        # results and a claim). Not on SQLite: a statement that reads before it writes,
        # outside BEGIN IMMEDIATE, may fail at once (SQLITE_BUSY) when another writer
        # commits in between.
        self._turn_alone = dialect.name == "postgresql"
        # The two hottest statements, on psycopg's own API (see aana.storage.queue_driver).
        self._defer_one: Callable[[Mapping[str, Any]], None] | None = None
        self._claim_one: Callable[[ClaimRequest], list[tuple[Any, ...]]] | None = None
        if dialect.name == "postgresql" and dialect.driver == "psycopg" and not dialect.is_async:
            from aana.storage.queue_driver import DriverClaim, DriverDefer  # postgresql extra

            self._defer_one = DriverDefer(engine, tasks)
            self._claim_one = DriverClaim(engine)
        # A worker's turn on SQLite, on the sqlite3 module's own API: the write lock that
        # every worker waits for is held half as long (see aana.storage.queue_driver_sqlite).
        self._turn_sqlite: DriverTurn | None = None
        if dialect.name == "sqlite" and dialect.driver == "pysqlite":
            self._turn_sqlite = DriverTurn(engine)

    @contextmanager
    def _writing(self, action: str) -> Iterator[Connection]:
        # One transaction; SQLite's takes the write lock up front (BEGIN IMMEDIATE).
        with translate_errors(action), self._writer.begin() as connection:
            yield connection

    @contextmanager
    def _alone(self, action: str) -> Iterator[Connection]:
        # One statement, committed by itself.
        with translate_errors(action), self._autocommit.connect() as connection:
            yield connection

    def defer(
        self,
        endpoint: str,
        data_items: Sequence[Any],
        priority: int = 0,
        user_id: str | None = None,
        when: Schedule = AT_ONCE,
        dedupe_key: str | None = None,
    ) -> list[uuid.UUID]:
        """Store tasks as CREATED in one statement; idle workers are woken.

        On PostgreSQL every insert into the tasks table notifies the workers (a trigger
        of the migrations), so the notification costs no round trip here.

        Args:
            endpoint: The endpoint that runs the tasks.
            data_items: One task's data per item.
            priority: Higher runs first.
            user_id: Who deferred the tasks.
            when: When the tasks are due (checked by ``aana.tasks.options.schedule``).
            dedupe_key: For one task: if an unfinished task has this key, its id is
                returned and nothing is stored (checked by ``check_dedupe_key``).

        Raises:
            TypeError: An item cannot be stored as JSON; nothing is written.

        """
        timing = {"at": when.at, "delay": when.delay}
        if dedupe_key is not None and len(data_items) != 1:
            raise ValueError("a dedupe_key applies to one task; defer the tasks one by one")
        if len(data_items) == 1:
            task_id = uuid.uuid4()
            data = json_text(data_items[0], "task data")
            values = {"id": task_id, "endpoint": endpoint, "data": data, **timing}
            values.update(priority=priority, user=user_id)
            if dedupe_key is not None:
                return [self._defer_once({**values, "dedupe_key": dedupe_key})]
            if self._defer_one is not None:
                self._defer_one(values)
            else:
                with self._alone("deferring a task") as connection:
                    connection.execute(queue_sql.new_task(), values)
            return [task_id]
        if not data_items:
            return []
        ids: list[uuid.UUID] = []
        encoded: Iterable[str] = (
            json_text(data, f"task data [{index}]") for index, data in enumerate(data_items)
        )
        id_column: Iterable[uuid.UUID] = _fresh_ids(len(data_items), ids)
        if self.engine.dialect.name != "postgresql":
            # Before the transaction: SQLite's write lock is not held while items are checked.
            encoded, id_column = list(encoded), list(id_column)
        # On PostgreSQL, made and checked as COPY sends the rows, while the server inserts
        # the first ones: a bad item ends the insert, and nothing is stored.
        same: dict[str, Any] = {"endpoint": endpoint, "priority": priority, "user_id": user_id}
        with self._writing(f"deferring {len(data_items)} tasks") as connection:
            if when.at is not None:
                same["scheduled_at"] = when.at
            elif when.delay:
                # Rows of a bulk insert carry values, not SQL: read the due time from the
                # database clock in the same transaction.
                same["scheduled_at"] = connection.execute(select(utcnow(when.delay))).scalar_one()
            columns = {"id": id_column, "data": encoded}
            count = len(data_items)
            insert_rows(connection, tasks, columns, same, {"data"}, stream=True, count=count)
        return ids

    def _defer_once(self, values: dict[str, Any]) -> uuid.UUID:
        """Store a task unless an unfinished one has its key; the id of the one kept.

        The unique index decides (``INSERT ... ON CONFLICT DO NOTHING``): concurrent
        callers with one key store one task between them. If the task holding the key
        finishes between our insert and our look-up, the key is free again: try again.
        """
        statement = queue_sql.new_task_once(self.engine.dialect)
        with self._alone("deferring a task") as connection:
            for _ in range(10):
                stored = connection.execute(statement, values).scalar_one_or_none()
                if stored is not None:
                    return uuid.UUID(str(stored))
                existing = connection.execute(
                    queue_sql.task_with_key(), {"dedupe_key": values["dedupe_key"]}
                ).scalar_one_or_none()
                if existing is not None:
                    return uuid.UUID(str(existing))
        raise RuntimeError(
            f"deferring the task with dedupe_key {values['dedupe_key']!r} kept racing"
        )

    def defer_periodic(
        self, endpoint: str, data: Any, priority: int, period_start: datetime, period_key: str
    ) -> bool:
        """Store the task of one period, due at its start, unless it exists already.

        Returns:
            Whether this call stored it (exactly one caller per ``period_key`` does).

        """
        values = {
            "id": uuid.uuid4(),
            "endpoint": endpoint,
            "data": json_text(data, "periodic task data"),
            "priority": priority,
            "user": None,
            "at": period_start,
            "delay": 0.0,
            "period_key": period_key,
        }
        statement = queue_sql.new_periodic_task(self.engine.dialect)
        with self._alone("deferring a periodic task") as connection:
            return connection.execute(statement, values).first() is not None

    def seconds_to_next_due(self) -> float | None:
        """Seconds until the next task scheduled for later is due; None if there is none."""
        with self._alone("looking for scheduled tasks") as connection:
            due, now = connection.execute(queue_sql.seconds_to_next_due()).one()
        # A millisecond at least: the worker never spins on a task due this instant.
        return None if due is None else max(0.001, (due - now).total_seconds())

    def database_now(self) -> datetime:
        """The database clock (UTC)."""
        with self._alone("reading the database clock") as connection:
            now: datetime = connection.execute(select(utcnow())).scalar_one()
        return now

    def claim(
        self,
        limit: int,
        max_retries: int,
        retryable_exceptions: Sequence[str] | None,
        maximum_active_tasks_per_user: int | None,
    ) -> list[Job]:
        """Claim up to ``limit`` tasks (ASSIGNED) through the repository."""
        from sqlalchemy.orm import Session  # a worker process claims without the ORM

        from aana.storage.repository.task import TaskRepository

        with Session(self.engine, expire_on_commit=False) as session:
            tasks = TaskRepository(session).fetch_unprocessed_tasks(
                limit=limit,
                max_retries=max_retries,
                retryable_exceptions=retryable_exceptions,
                maximum_active_tasks_per_user=maximum_active_tasks_per_user,
            )
            return [
                Job(
                    Attempt(task.id, task.num_retries, task.assigned_at),  # type: ignore[arg-type]
                    task.endpoint,
                    task.data,
                    task.user_id,
                )
                for task in tasks
            ]

    def settle(
        self,
        outcomes: Sequence[tuple[Attempt, Status | None, Any]],
        claim: ClaimRequest | None = None,
        retry_delays: Mapping[uuid.UUID, float] | None = None,
    ) -> tuple[set[uuid.UUID], list[Job]]:
        """In one transaction: store results, hand back unstarted jobs, claim new ones.

        Args:
            outcomes: Ended attempts: COMPLETED or FAILED with their result, or None
                for a job that was never started (handed back as NOT_FINISHED, its
                claim not counted in ``num_retries``).
            claim: What to claim next, straight into RUNNING; None to claim nothing.
            retry_delays: Seconds from now until a failed task that will be retried is
                due again, by task id (others keep their due time).

        Returns:
            The ids whose result was written (an attempt that no longer holds its task
            is skipped), and the jobs claimed.

        """
        results = [
            {
                **queue_sql.attempt_params(attempt),
                "new_status": status,
                "new_result": value,
                "new_progress": 1.0 if status == Status.COMPLETED else None,
                "retry_delay": (retry_delays or {}).get(attempt.task_id),
            }
            for attempt, status, value in outcomes
            if status is not None
        ]
        unstarted = [
            queue_sql.attempt_params(attempt) for attempt, status, _ in outcomes if status is None
        ]
        if not (results or unstarted or claim):
            return set(), []
        if claim is not None and not (results or unstarted) and self._turn_alone:
            # A claim alone is one statement, atomic by itself: committed on its own, it
            # is one round trip instead of three (BEGIN, the claim, COMMIT). Its commit
            # need not wait for the disk (see ``queue_sql.claim``): results' commits do.
            if self._claim_one is not None:
                return set(), _jobs(self._claim_one(claim))
            with self._alone("claiming tasks") as db:
                return set(), self._claim(db, claim, relaxed=True)
        if claim is not None and results and not unstarted and self._turn_alone:
            # Results and the next claim in one statement, committed by itself (and
            # durably): one round trip instead of four (see ``queue_sql.finish_and_claim``).
            parameters = {**queue_sql.json_params(results), **claim.parameters()}
            with self._alone(f"settling {len(outcomes)} task(s) and claiming") as db:
                rows = db.execute(queue_sql.finish_and_claim(claim), parameters).all()
            written_ids, claimed = rows[0][0], [row[1:] for row in rows if row[1] is not None]
            return set(written_ids or ()), _jobs(claimed)
        if self._turn_sqlite is not None and not unstarted:
            turn = self._turn_sqlite(results, claim)
            if turn is not None:  # else an attempt lost its task: the path below says which
                return {attempt.task_id for attempt, status, _ in outcomes}, _jobs(turn)
        jobs: list[Job] = []
        # One statement each, executed over all rows (see ``_changed``); only when the
        # fence dropped some rows do we ask which.
        with self._writing(f"settling {len(outcomes)} task(s) and claiming") as db:
            finished = [attempt for attempt, status, _ in outcomes if status is not None]
            written = {attempt.task_id for attempt in finished}
            if results and _changed(db, queue_sql.finish_many, results) != len(results):
                written = self._still_held(db, finished, FINISHED)
            if unstarted:
                _changed(db, queue_sql.release_unstarted_many, unstarted)
            if claim is not None:
                jobs = self._claim(db, claim)
        return written, jobs

    @staticmethod
    def _still_held(
        db: Connection, attempts: Sequence[Attempt], statuses: Sequence[Status]
    ) -> set[uuid.UUID]:
        held: set[uuid.UUID] = set()
        for attempt in attempts:
            rows = db.execute(queue_sql.attempt_state(), queue_sql.attempt_params(attempt))
            held.update(task_id for task_id, status in rows if Status(status) in statuses)
        return held

    @staticmethod
    def _claim(db: Connection, request: ClaimRequest, relaxed: bool = False) -> list[Job]:
        rows = db.execute(queue_sql.claim(request, job=True, relaxed=relaxed), request.parameters())
        return _jobs(rows)

    def start(self, jobs: Sequence[Job]) -> list[Job]:
        """Mark jobs claimed by ``claim`` RUNNING; returns those whose claim still held."""
        if not jobs:
            return []
        params = [queue_sql.attempt_params(job.attempt) for job in jobs]
        with self._writing("starting tasks") as db:
            if _changed(db, queue_sql.start_many, params) == len(params):
                return list(jobs)
            running = self._still_held(db, [job.attempt for job in jobs], (Status.RUNNING,))
        return [job for job in jobs if job.id in running]

    def finish(self, outcomes: Sequence[tuple[Attempt, Status, Any]]) -> set[uuid.UUID]:
        """Store results of running attempts; returns the ids whose result was written."""
        return self.settle(outcomes)[0]

    def report_progress(self, attempt: Attempt, progress: float) -> bool:
        """Record progress; False if the attempt no longer holds its task or was cancelled."""
        params = {**queue_sql.attempt_params(attempt), "progress": progress}
        with self._alone("reporting progress") as connection:
            row = connection.execute(queue_sql.report_progress(), params).first()
        return row is not None and not row[0]

    def should_abort(self, attempt: Attempt) -> bool:
        """Whether the attempt's task was cancelled, or the attempt no longer holds it."""
        params = queue_sql.attempt_params(attempt)
        with self._alone("checking for a cancel request") as connection:
            requested = connection.execute(queue_sql.cancel_requested(), params).first()
        return requested is None or bool(requested[0])

    def heartbeat(self, attempts: Sequence[Attempt]) -> None:
        """Keep these attempts' tasks from expiring."""
        if attempts:
            with self._writing("sending heartbeats") as db:
                params = [queue_sql.attempt_params(attempt) for attempt in attempts]
                _changed(db, queue_sql.heartbeat_many, params)

    def report_worker(self, worker: Mapping[str, Any], first: bool) -> None:
        """Record a worker's heartbeat (``worker_*`` parameters of ``queue_sql``).

        The first one also removes rows of workers long silent.
        """
        with self._writing("recording the worker's heartbeat") as db:
            if first:
                db.execute(queue_sql.workers_gone(), {"worker_id": worker["worker_id"]})
            if db.execute(queue_sql.worker_seen(), worker).rowcount == 0:
                db.execute(queue_sql.worker_started(), worker)

    def compact_counts(self) -> None:
        """Fold the PostgreSQL rows of ``task_counts`` (see ``TaskRepository.compact_counts``)."""
        if dialects.counts_need_folding(self.engine.dialect):
            with self._alone("compacting task counts") as db:
                db.execute(queue_sql.compact_counts())

    def forget_worker(self, worker_id: str) -> None:
        """Remove a stopping worker's row."""
        with self._alone("removing the worker's row") as db:
            db.execute(queue_sql.workers_gone(), {"worker_id": worker_id})

    def release(self, attempts: Sequence[Attempt], started: bool = True) -> set[uuid.UUID]:
        """Hand unfinished attempts back to the queue (NOT_FINISHED); returns their ids.

        ``started`` False: their handlers never started, so their claims are not
        counted (see ``queue_sql.release_many``).
        """
        if not attempts:
            return set()
        params = [queue_sql.attempt_params(attempt) for attempt in attempts]
        with self._writing("handing back tasks") as db:
            statement = queue_sql.release_many if started else queue_sql.release_unstarted_many
            if _changed(db, statement, params) == len(params):
                return {attempt.task_id for attempt in attempts}
            return self._still_held(db, attempts, (Status.NOT_FINISHED, Status.CANCELLED))

    def sweep(
        self,
        execution_timeout: float,
        heartbeat_timeout: float,
        max_retries: int,
        retry_policy: queue_sql.Backoff | None = None,
        endpoint_policies: Mapping[str, queue_sql.Backoff] | None = None,
    ) -> list[uuid.UUID]:
        """Hand back (after a back-off) or fail tasks whose worker went silent or ran long.

        See ``TaskRepository.update_expired_tasks``; one statement, committed by itself.

        Returns:
            The ids of the tasks changed.

        """
        statement, params = queue_sql.expire(
            execution_timeout, heartbeat_timeout, max_retries, retry_policy, endpoint_policies
        )
        with self._alone("expiring tasks") as connection:
            return [row.id for row in connection.execute(statement, params)]


def _changed(
    connection: Connection, many: Callable[[bool], Update], rows: Sequence[dict[str, Any]]
) -> int:
    """Run the statement ``many`` builds once per item of ``rows``; rows changed in all.

    On PostgreSQL it is one statement over all rows (``queue_sql.json_rows`` says why
    not psycopg's pipelined ``executemany``); SQLite, in process, takes them in one call.
    """
    if connection.dialect.name == "postgresql":
        return int(connection.execute(many(True), queue_sql.json_params(rows)).rowcount)
    return int(connection.execute(many(False), rows).rowcount)


def _fresh_ids(count: int, made: list[uuid.UUID]) -> Iterator[uuid.UUID]:
    """``count`` new task ids, each also appended to ``made`` as it is made."""
    for _ in range(count):
        new = uuid.uuid4()
        made.append(new)
        yield new


def _jobs(rows: Iterable[Sequence[Any]]) -> list[Job]:
    """The jobs of rows of ``queue_sql.JOB_COLUMNS``."""
    return [
        Job(Attempt(task_id, number, assigned_at), endpoint, data, user_id)
        for task_id, number, assigned_at, endpoint, data, user_id in rows
    ]
