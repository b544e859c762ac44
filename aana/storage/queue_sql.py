"""The task queue's SQL, in one place.

Every statement is portable SQLAlchemy: ``FOR UPDATE SKIP LOCKED`` renders on PostgreSQL
and is dropped on SQLite, where the caller instead opens the transaction with
``BEGIN IMMEDIATE`` (SQLite has one writer at a time). Every time comparison and every
timestamp uses the database clock (``utcnow``). Every state change is guarded in the
WHERE clause, so a row that changed under a concurrent writer is left alone.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from functools import cache
from typing import Any, NamedTuple, Protocol
from uuid import UUID

from sqlalchemy import (
    Boolean,
    ColumnElement,
    Delete,
    Dialect,
    Double,
    Float,
    Insert,
    Integer,
    Select,
    String,
    Text,
    Update,
    Uuid,
    and_,
    any_,
    bindparam,
    case,
    cast,
    column,
    delete,
    func,
    insert,
    literal,
    null,
    or_,
    select,
    text,
    true,
    tuple_,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, TIMESTAMP
from sqlalchemy.sql.expression import TableValuedAlias
from sqlalchemy.types import TypeEngine

from aana.storage.checks import check_json
from aana.storage.dialects import (
    insert_unless_conflicting,
    json_text,
    likely,
    random_fraction,
    smallest,
    utcnow,
)
from aana.storage.tables import CLAIMABLE_SQL, UNFINISHED_SQL, Status, task_counts, tasks, workers
from aana.storage.types import CheckedFloat, JsonType, UtcDateTime

CLAIMABLE = (Status.CREATED, Status.NOT_FINISHED)
ACTIVE = (Status.ASSIGNED, Status.RUNNING)
FINISHED = (Status.COMPLETED, Status.FAILED, Status.CANCELLED)
UNFINISHED = (*CLAIMABLE, *ACTIVE)
CLAIM_ORDER = (tasks.c.priority.desc(), tasks.c.scheduled_at, tasks.c.id)
"""Highest priority first, then the task due first: the order of ``ix_tasks_claimable``."""


JOB_COLUMNS = (
    tasks.c.id,
    tasks.c.num_retries,
    tasks.c.assigned_at,
    tasks.c.endpoint,
    tasks.c.data,
    tasks.c.user_id,
)
"""What a worker needs of a task it claims: the attempt, and what to run."""


def one_of(column: ColumnElement[Any], values: Sequence[Any]) -> ColumnElement[bool]:
    """``column IN values``, one bound parameter per value.

    Not an "expanding" parameter: the statement's SQL is then the same on every call,
    so it is compiled once and can be prepared by the server.
    """
    return or_(*(column == value for value in values))


def due() -> ColumnElement[bool]:
    """Tasks whose time has come by the database clock.

    ``utcnow()`` is the clock as the statement began (``statement_timestamp()`` on
    PostgreSQL), fixed while it runs: the planner may compare it inside an index scan,
    so tasks not yet due are skipped on their index entry, never fetched.
    """
    return tasks.c.scheduled_at <= utcnow()


def claimable(retryable_exceptions: tuple[str, ...], recheck: bool = False) -> ColumnElement[bool]:
    """New or handed-back tasks, and failed ones worth another attempt, once due.

    Parameters: ``max_retries`` (when there are retryable exceptions).

    With ``recheck`` (the claim's UPDATE, re-checking the rows its candidates chose) the
    due test is left out: a chosen task stays due, and with it PostgreSQL would rather
    scan every due task of the claim-order index than look the few chosen up by id.
    """
    # The very condition of the claim-order index, so the planner reads that index; the
    # due test reads a column of that index, so tasks not yet due are never fetched.
    condition: ColumnElement[bool] = likely(text(CLAIMABLE_SQL))
    if not recheck:
        condition = and_(condition, due())
    if not retryable_exceptions:
        return condition
    retryable = and_(
        tasks.c.status == Status.FAILED,
        tasks.c.num_retries < bindparam("max_retries", type_=Integer()),
        one_of(tasks.c.result["error"].as_string(), retryable_exceptions),
    )
    return or_(condition, retryable if recheck else and_(retryable, due()))


def claim_candidates(
    retryable_exceptions: tuple[str, ...],
    per_user: bool,
    limited: bool,
    leaving: Select[Any] | None = None,
) -> Select[Any]:
    """Ids of the tasks to claim next: high priority first, then oldest first.

    Parameters: ``limit`` (when ``limited``), ``max_active`` (when ``per_user``).
    ``leaving``: ids of tasks that no longer count as a user's active tasks (those whose
    results the same statement stores, see ``finish_and_claim``).

    With ``per_user``, a user's tasks are ranked and only as many are taken as the user
    has room for beside the tasks already assigned or running, all in this one
    statement: no lock is taken beyond the rows claimed (``FOR UPDATE SKIP LOCKED``, at
    the outer level: window functions exclude it at their own), so claimers never wait
    for each other and tasks without a user never wait for anyone. The room is counted
    from what was committed when the statement began: claimers working at the same
    moment for the same user may together overshoot the limit by what each takes at
    once (at most ``limit``); SQLite, with one writer at a time, is exact.
    """
    condition = claimable(retryable_exceptions)
    order = CLAIM_ORDER
    limit = bindparam("limit", type_=Integer()) if limited else None
    if not per_user:
        query = select(tasks.c.id).where(condition).order_by(*order).limit(limit)
        return query.with_for_update(skip_locked=True)

    max_active = bindparam("max_active", type_=Integer())
    still_active = [] if leaving is None else [tasks.c.id.not_in(leaving)]
    active = (
        select(tasks.c.user_id, func.count().label("active"))
        .where(one_of(tasks.c.status, ACTIVE), tasks.c.user_id.is_not(None), *still_active)
        .group_by(tasks.c.user_id)
        .subquery("active")
    )
    full = select(active.c.user_id).where(active.c.active >= max_active)
    # Only the head of the queue is ranked (it reads the claim-order index): users at
    # their limit are skipped, and a user with room gets at most that much of the head.
    head = (
        select(tasks.c.id, tasks.c.user_id, tasks.c.priority, tasks.c.scheduled_at)
        .where(condition, or_(tasks.c.user_id.is_(None), tasks.c.user_id.not_in(full)))
        .order_by(*order)
        .limit(None if limit is None else limit * 4)
        .subquery("head")
    )
    ranked = select(
        head,
        func.row_number()
        .over(
            partition_by=head.c.user_id,
            order_by=(head.c.priority.desc(), head.c.scheduled_at, head.c.id),
        )
        .label("rank"),
    ).subquery("ranked")
    room = max_active - func.coalesce(active.c.active, 0)
    fitting = (
        select(ranked.c.id)
        .select_from(ranked.outerjoin(active, ranked.c.user_id == active.c.user_id))
        .where(or_(ranked.c.user_id.is_(None), ranked.c.rank <= room))
    )
    # Only the rows taken are locked; those another claimer holds are skipped.
    return (
        select(tasks.c.id)
        .where(tasks.c.id.in_(fitting), condition)
        .order_by(*order)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )


class ClaimRequest(NamedTuple):
    """What to claim: how many tasks (None: all), and which are eligible."""

    limit: int | None
    max_retries: int
    retryable_exceptions: Sequence[str] | None
    maximum_active_tasks_per_user: int | None

    def parameters(self) -> dict[str, Any]:
        """The values of the claim statement's parameters."""
        return {
            "limit": self.limit,
            "max_retries": self.max_retries,
            "max_active": self.maximum_active_tasks_per_user,
        }

    @property
    def per_user(self) -> bool:
        """Whether the per-user limit applies (None or 0: no limit)."""
        return bool(self.maximum_active_tasks_per_user)


def claim(request: ClaimRequest, job: bool = False, relaxed: bool = False) -> Update:
    """Claim the tasks ``request`` asks for, re-checking that each is still claimable.

    By default they become ASSIGNED and their rows are returned (the repository loads
    them as entities). A ``job`` claim, by a
    worker that starts what it claims in the same transaction, makes them RUNNING
    straight away (ASSIGNED would never be seen; the claim's fence is the same) and
    returns ``JOB_COLUMNS``. Run it with ``request.parameters()``.

    A ``relaxed`` claim (PostgreSQL, committed by itself) turns ``synchronous_commit``
    off for its own transaction: its commit does not wait for the WAL to reach the disk,
    the slowest part of a claim on an idle worker. A server crash may then forget a
    claim made just before, which makes the task claimable again, as a worker's crash
    would: the first worker's result is refused by the fence (``assigned_at``), and the
    task runs again (at least once, as always). Results are committed durably.
    """
    retryable = tuple(request.retryable_exceptions or ())
    return _claim(retryable, request.per_user, request.limit is not None, job, relaxed)


@cache
def _claim(
    retryable: tuple[str, ...], per_user: bool, limited: bool, job: bool, relaxed: bool
) -> Update:
    return _claiming(claim_candidates(retryable, per_user, limited), retryable, job, relaxed)


def _claiming(chosen: Select[Any], retryable: tuple[str, ...], job: bool, relaxed: bool) -> Update:
    """The claim of the ``chosen`` tasks (``claim_candidates``) still claimable."""
    # Materialised: as a plain subquery PostgreSQL may run it again for every row it
    # updates (a nested-loop semi-join), each run locking rows past the first ones, so
    # more tasks than ``limit`` would be claimed.
    candidates = chosen.cte("candidates").prefix_with("MATERIALIZED", dialect="postgresql")
    statement = (
        update(tasks)
        .where(tasks.c.id.in_(select(candidates.c.id)), claimable(retryable, recheck=True))
        .values(
            status=Status.RUNNING if job else Status.ASSIGNED,
            assigned_at=utcnow(),
            updated_at=utcnow(),
            num_retries=tasks.c.num_retries + 1,
        )
    )
    if relaxed:
        # Run once, before the first row is claimed (an InitPlan); local to the
        # statement's transaction, so the pooled connection keeps its own setting.
        setting = select(func.set_config("synchronous_commit", "off", True)).scalar_subquery()
        statement = statement.where(setting.is_not(None))
    return statement.returning(*JOB_COLUMNS) if job else statement.returning(*tasks.c)


def _new_task_values() -> dict[str, Any]:
    # A task is due at ``at`` if given, else ``delay`` seconds from now by the database
    # clock (0: at once).
    at = bindparam("at", type_=UtcDateTime())
    delay = cast(bindparam("delay", type_=Float()), Float())
    return {
        "id": bindparam("id", type_=tasks.c.id.type),
        "endpoint": bindparam("endpoint", type_=tasks.c.endpoint.type),
        "data": json_text(bindparam("data", type_=String())),
        "priority": bindparam("priority", type_=tasks.c.priority.type),
        "user_id": bindparam("user", type_=tasks.c.user_id.type),
        "scheduled_at": func.coalesce(at, utcnow(delay)),
    }


@cache
def new_task() -> Insert:
    """Store one task; the other columns take the table's defaults (CREATED, ...).

    Parameters: ``id``, ``endpoint``, ``data`` (its JSON text), ``priority``, ``user``,
    ``at`` (an aware datetime, or None) and ``delay`` (seconds; used when ``at`` is None).
    """
    return insert(tasks).values(_new_task_values())


UNFINISHED_WITH_KEY = text(f"dedupe_key IS NOT NULL AND {UNFINISHED_SQL}")
"""The condition of the de-duplication index ``ix_tasks_dedupe_key``."""


@cache
def new_task_once(dialect: Dialect) -> Insert:
    """Store one task unless an unfinished task has its ``dedupe_key``; returns its id.

    Parameters: those of ``new_task`` and ``dedupe_key``. No row is returned when a task
    with that key is unfinished (see ``task_with_key``).
    """
    values = {**_new_task_values(), "dedupe_key": bindparam("dedupe_key", type_=String())}
    statement = insert_unless_conflicting(dialect, tasks, [tasks.c.dedupe_key], UNFINISHED_WITH_KEY)
    return statement.values(values).returning(tasks.c.id)


@cache
def new_periodic_task(dialect: Dialect) -> Insert:
    """Store the task of one period unless its ``period_key`` exists; returns its id.

    Parameters: those of ``new_task`` and ``period_key``. No row is returned when
    another worker stored that period's task first.
    """
    values = {**_new_task_values(), "period_key": bindparam("period_key", type_=String())}
    statement = insert_unless_conflicting(dialect, tasks, [tasks.c.period_key], None)
    return statement.values(values).returning(tasks.c.id)


@cache
def seconds_to_next_due() -> Select[datetime, Any]:
    """The due time of the next task waiting for a later time (or NULL), and now.

    Failed tasks count too: a retryable failure waits out its back-off as FAILED.
    """
    waiting = one_of(tasks.c.status, (*CLAIMABLE, Status.FAILED))
    earliest = select(func.min(tasks.c.scheduled_at)).where(
        waiting, tasks.c.scheduled_at > utcnow()
    )
    return select(earliest.scalar_subquery(), utcnow())


@cache
def task_with_key() -> Select[UUID]:
    """The unfinished task with the ``dedupe_key`` given (at most one)."""
    key = bindparam("dedupe_key", type_=String())
    return select(tasks.c.id).where(tasks.c.dedupe_key == key, text(UNFINISHED_SQL))


def set_status(
    task_id: UUID, status: Status, progress: float | None, result: Any, has_result: bool
) -> tuple[Update, dict[str, Any]]:
    """Move one task to ``status``, stamping the clock fields the status implies.

    Args:
        task_id: The task.
        status: Its new status.
        progress: Its new progress, or None to keep it.
        result: Its new result, when ``has_result``.
        has_result: Whether to set the result.

    Returns:
        The statement, built once per shape of change and then reused, and its values.

    """
    params: dict[str, Any] = {"task_id": task_id, "status": status}
    if progress is not None:
        params["progress"] = progress
    if has_result:
        params["result"] = result
    return _set_status(status, progress is not None, has_result), params


@cache
def _set_status(status: Status, with_progress: bool, with_result: bool) -> Update:
    values: dict[str, Any] = {
        "status": bindparam("status", type_=tasks.c.status.type),
        "updated_at": utcnow(),
        # A task that is no longer finished has no completion time.
        "completed_at": utcnow() if status in FINISHED else null(),
    }
    if with_progress:
        values["progress"] = bindparam("progress", type_=tasks.c.progress.type)
    if with_result:
        values["result"] = bindparam("result", type_=JsonType)
    if status == Status.ASSIGNED:
        values["assigned_at"] = utcnow()
        values["num_retries"] = tasks.c.num_retries + 1
    task_id = bindparam("task_id", type_=tasks.c.id.type)
    # The whole task: the one loaded is refreshed, as a query would load it.
    return update(tasks).where(tasks.c.id == task_id).values(values).returning(*tasks.c)


def retry(task_id: UUID) -> Update:
    """Send a task back to the queue as new, due now, unless it is being worked on."""
    return retry_where(tasks.c.id == task_id, tasks.c.status.not_in(ACTIVE))


def retry_where(*conditions: ColumnElement[bool]) -> Update:
    """Send the tasks matching ``conditions`` back to the queue as new, due now; returns them."""
    return (
        update(tasks)
        .where(*conditions)
        .values(
            status=Status.CREATED,
            progress=0.0,
            result=null(),
            assigned_at=None,
            completed_at=None,
            num_retries=0,
            cancel_requested=False,
            scheduled_at=utcnow(),
            updated_at=utcnow(),
        )
        .returning(*tasks.c)
    )


def cancel(task_id: UUID) -> Update:
    """Cancel a task that is not finished; returns it, or nothing if it is finished.

    A task waiting in the queue becomes CANCELLED at once (it is never claimed); one
    assigned or running gets ``cancel_requested``, and its worker stores CANCELLED
    when its handler ends.
    """
    waiting = one_of(tasks.c.status, CLAIMABLE)
    return (
        update(tasks)
        .where(tasks.c.id == task_id, one_of(tasks.c.status, UNFINISHED))
        .values(
            status=case((waiting, Status.CANCELLED.value), else_=tasks.c.status),
            completed_at=case((waiting, utcnow()), else_=tasks.c.completed_at),
            cancel_requested=True,
            updated_at=utcnow(),
        )
        .returning(*tasks.c)
    )


class Backoff(Protocol):
    """An exponential back-off: ``aana.tasks.options.RetryPolicy`` is one."""

    @property
    def base(self) -> float: ...  # noqa: D102
    @property
    def cap(self) -> float: ...  # noqa: D102
    @property
    def jitter(self) -> float: ...  # noqa: D102


def backoff_by_endpoint(default: Backoff, overrides: Mapping[str, Backoff]) -> ColumnElement[Any]:
    """Seconds a lost task waits before its next attempt, by its endpoint's policy."""

    def policy_value(name: str) -> ColumnElement[Any]:
        fallback = literal(float(getattr(default, name)))
        if not overrides:
            return fallback
        whens = [
            (tasks.c.endpoint == endpoint, literal(float(getattr(policy, name))))
            for endpoint, policy in overrides.items()
        ]
        return case(*whens, else_=fallback)

    return backoff_seconds(
        tasks.c.num_retries, policy_value("base"), policy_value("cap"), policy_value("jitter")
    )


def backoff_seconds(
    attempt: ColumnElement[Any], base: Any, cap: Any, jitter: Any
) -> ColumnElement[Any]:
    """``min(cap, base * 2 ** (attempt - 1))``, less up to ``jitter`` of it, in SQL.

    ``jitter`` is a fraction (0 to 1): the delay is drawn by the database between
    ``(1 - jitter)`` and 1 times the exponential one, so retries of many tasks that
    failed together spread out.
    """
    capped: ColumnElement[Any] = smallest(func.coalesce(attempt, 1) - 1, literal(30))
    doubling = literal(1).op("<<")(case((capped < 0, 0), else_=capped))
    delay = smallest(cast(cap, Float()), cast(base, Float()) * doubling)
    return delay * (1.0 - cast(jitter, Float()) * random_fraction())


def heartbeat(task_ids: Sequence[UUID]) -> Update:
    """Record that the given tasks are still being worked on.

    Rows another transaction holds (a result being stored) are skipped, not waited for.
    """
    alive = select(tasks.c.id).where(tasks.c.id.in_(task_ids), tasks.c.status.in_(ACTIVE))
    return (
        update(tasks)
        .where(tasks.c.id.in_(alive.with_for_update(skip_locked=True)))
        .values(updated_at=utcnow())
    )


def expire(
    execution_timeout: float,
    heartbeat_timeout: float,
    max_retries: int,
    retry_policy: Backoff | None = None,
    endpoint_policies: Mapping[str, Backoff] | None = None,
) -> tuple[Update, dict[str, Any]]:
    """Hand back, or fail, active tasks whose attempt ran too long or went silent.

    One statement: a task with retries left (``num_retries < max_retries``, a parameter)
    goes back to the queue as NOT_FINISHED; the others are FAILED with a
    ``TimeoutError`` (ran longer than ``execution_timeout``) or ``HeartbeatTimeoutError``
    result. Rows locked by a transaction in progress (a result being stored) are
    skipped. A task handed back is due after the back-off of ``retry_policy``, or of
    its endpoint's policy in ``endpoint_policies`` (see ``backoff_by_endpoint``); without
    a policy, at once. A task whose cancellation was requested ends CANCELLED. The
    statement returns the tasks changed.

    Returns:
        The statement and its parameters.

    """
    params = {
        "max_retries": max_retries,
        "execution_timeout": -float(execution_timeout),
        "heartbeat_timeout": -float(heartbeat_timeout),
        "timeout_result": {
            "error": "TimeoutError",
            "message": f"Task ran longer than {execution_timeout} seconds.",
        },
        "silent_result": {
            "error": "HeartbeatTimeoutError",
            "message": f"No heartbeat for {heartbeat_timeout} seconds.",
        },
    }
    if retry_policy is None:
        return _expire_cached(), params
    return _expire_statement(backoff_by_endpoint(retry_policy, endpoint_policies or {})), params


@cache
def _expire_cached() -> Update:
    return _expire_statement(literal(0.0))


def _expire_statement(backoff: ColumnElement[Any]) -> Update:
    too_long = tasks.c.assigned_at < utcnow(bindparam("execution_timeout", type_=CheckedFloat()))
    silent = tasks.c.updated_at < utcnow(bindparam("heartbeat_timeout", type_=CheckedFloat()))
    lost = (
        select(tasks.c.id)
        .where(tasks.c.status.in_(ACTIVE), or_(too_long, silent))
        .with_for_update(skip_locked=True)
    )
    retry = tasks.c.num_retries < bindparam("max_retries", type_=Integer())
    failure = case(
        (too_long, bindparam("timeout_result", type_=JsonType)),
        else_=bindparam("silent_result", type_=JsonType),
    )
    cancelled = tasks.c.cancel_requested == true()
    return (
        update(tasks)
        .where(tasks.c.id.in_(lost), tasks.c.status.in_(ACTIVE))
        .values(
            status=case(
                (cancelled, Status.CANCELLED.value),
                (retry, Status.NOT_FINISHED.value),
                else_=Status.FAILED.value,
            ),
            result=case((cancelled, tasks.c.result), (retry, tasks.c.result), else_=failure),
            completed_at=case((and_(retry, ~cancelled), null()), else_=utcnow()),
            scheduled_at=case((retry, utcnow(backoff)), else_=tasks.c.scheduled_at),
            updated_at=utcnow(),
        )
        .returning(*tasks.c)
    )


# --- The worker's side: every write is fenced on the attempt that claimed the task. ---
#
# An attempt is identified by the task id, ``num_retries`` (bumped by every claim) and
# ``assigned_at`` (stamped by the database clock at every claim). ``retry_task`` resets
# ``num_retries``, and an unstarted hand-back takes its claim back, so the count alone
# could repeat; the pair can repeat only if a task is handed back unstarted and claimed
# again within the clock's resolution (a millisecond on SQLite). That is harmless: the
# attempt handed back never ran, so it only sent heartbeats, and whichever copy of the
# job a thread takes first runs it; the other is skipped.


class Attempt(NamedTuple):
    """One claim of a task: what a worker must still hold to write the task."""

    task_id: UUID
    number: int
    assigned_at: datetime


def held(*statuses: Status, rows: TableValuedAlias | None = None) -> ColumnElement[bool]:
    """Rows still in one of ``statuses`` for the attempt given by ``attempt_params``.

    With ``rows`` (see ``json_rows``) the attempts are its columns instead of parameters,
    and the statement finds them by primary key only: their ids also come as the array
    parameter ``ids`` (so the planner knows how few rows it looks for), and the status
    test is written ``(...) IS TRUE``, which no index serves. Planned by its status, the
    statement read every entry of the status index for that status, and entries of
    tasks that moved on pile up there between vacuums (a bitmap scan never marks them
    dead): on a busy queue, 39,000 entries for the results of 10 tasks.
    """
    # Not IN: an "expanding" IN parameter cannot be executed over many rows.
    in_status = or_(*(tasks.c.status == status for status in statuses))
    if rows is None:
        return and_(
            tasks.c.id == bindparam("fence_id", type_=tasks.c.id.type),
            tasks.c.num_retries == bindparam("fence_number"),
            tasks.c.assigned_at == bindparam("fence_assigned_at", type_=UtcDateTime()),
            in_status,
        )
    fence_id, number, assigned_at = (rows.c[name] for name in ATTEMPT_COLUMNS)
    return and_(
        tasks.c.id == any_(bindparam("ids", type_=ARRAY(Uuid()))),
        tasks.c.id == fence_id,
        tasks.c.num_retries == number,
        tasks.c.assigned_at == assigned_at,
        in_status.is_(true()),
    )


def attempt_params(attempt: Attempt) -> dict[str, Any]:
    """Parameters of the fence for one attempt, for the ``*_many`` statements."""
    return {
        "fence_id": attempt.task_id,
        "fence_number": attempt.number,
        "fence_assigned_at": attempt.assigned_at,
    }


ATTEMPT_COLUMNS = ("fence_id", "fence_number", "fence_assigned_at")


def json_rows(*columns: tuple[str, TypeEngine[Any]]) -> TableValuedAlias:
    """The rows of a ``*_many`` statement as one JSON array, the ``rows`` parameter.

    PostgreSQL only (``jsonb_to_recordset``): the statement then runs once, in one
    message sequence, for any number of rows. Run over many parameter sets, psycopg
    pipelines it instead, sending the statements before the Sync that ends them: a
    worker cut off in between leaves a server session that has run them, holds their
    row locks, and is neither idle in a transaction nor running a statement, so
    neither ``idle_in_transaction_session_timeout`` nor ``statement_timeout`` ends it.
    ``json_params`` makes the parameter; ``columns`` follow the attempt's fence.
    """
    fence: tuple[TypeEngine[Any], ...] = (Uuid(), Integer(), TIMESTAMP(timezone=True))
    typed = [*zip(ATTEMPT_COLUMNS, fence, strict=True), *columns]
    recordset = func.jsonb_to_recordset(bindparam("rows", type_=JSONB()))
    return recordset.table_valued(*(column(name, type_) for name, type_ in typed)).render_derived(
        name="given", with_types=True
    )


def json_params(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The ``rows`` parameter of a ``json_rows`` statement, from ``*_many`` parameter sets.

    A result is checked as the result column checks it, and wrapped in a one-item array
    (read back with ``-> 0``): ``jsonb_to_recordset`` reads a JSON null as SQL NULL.
    """
    encoded = []
    ids = []
    for row in rows:
        ids.append(row["fence_id"])
        item = {
            **row,
            "fence_id": str(row["fence_id"]),
            "fence_assigned_at": row["fence_assigned_at"].astimezone(UTC).isoformat(),
        }
        if "new_result" in row:
            item["new_result"] = [check_json(row["new_result"], "tasks.result")]
        encoded.append(item)
    return {"rows": encoded, "ids": ids}


@cache
def start_many(together: bool = False) -> Update:
    """Mark a claimed attempt RUNNING if its claim still holds (run over many rows).

    ``together``: all rows in one ``rows`` parameter (see ``json_rows``); likewise below.
    """
    rows = json_rows() if together else None
    return update(tasks).where(held(Status.ASSIGNED, rows=rows)).values(status=Status.RUNNING)


@cache
def finish_many(together: bool = False) -> Update:
    """Store a running attempt's outcome if it still holds its task (run over many rows).

    Parameters besides the fence: ``new_status`` (COMPLETED or FAILED), ``new_result``,
    ``new_progress`` (None keeps the progress) and ``retry_delay`` (seconds from now
    until the task is due again if it is retried; None keeps its due time). A task whose
    cancellation was requested ends CANCELLED, whatever its handler returned.
    """
    if together:
        rows = json_rows(
            ("new_status", Text()),
            ("new_result", JSONB()),
            ("new_progress", Double()),
            ("retry_delay", Double()),
        )
        new_status: ColumnElement[Any] = rows.c.new_status
        # The array's item: ``->`` on any PostgreSQL (subscripts need 14).
        new_result: ColumnElement[Any] = rows.c.new_result.op("->", return_type=JSONB)(0)
        new_progress: ColumnElement[Any] = rows.c.new_progress
        delay: ColumnElement[Any] = rows.c.retry_delay
    else:
        rows = None
        status_type = tasks.c.status.type
        new_status = cast(bindparam("new_status", type_=status_type), String())
        new_result = bindparam("new_result", type_=JsonType)
        new_progress = bindparam("new_progress", type_=tasks.c.progress.type)
        delay = cast(bindparam("retry_delay", type_=Float()), Float())
    cancelled = tasks.c.cancel_requested == true()
    return (
        update(tasks)
        .where(held(Status.RUNNING, rows=rows))
        .values(
            status=case((cancelled, Status.CANCELLED.value), else_=new_status),
            scheduled_at=func.coalesce(utcnow(delay), tasks.c.scheduled_at),
            result=new_result,
            progress=func.coalesce(new_progress, tasks.c.progress),
            completed_at=utcnow(),
        )
    )


def finish_and_claim(request: ClaimRequest) -> Select[Any]:
    """Store results and claim more in one statement (PostgreSQL, one worker's turn).

    ``finish_many(True)`` and the ``job`` claim, as two data-modifying CTEs: one round
    trip, committed by itself, instead of four (BEGIN, the two statements, COMMIT), with
    the same atomicity. Run it with ``json_params(results)`` and ``request.parameters()``.
    Its rows: the ids whose result was written (an array, or NULL if none), then the
    ``JOB_COLUMNS`` of a claimed task; all NULL but the first if none was claimed.

    Both parts read the tasks as they were when the statement began; a per-user limit
    leaves the tasks whose results are stored out of their users' active tasks, as the
    claim would see them after the results in two statements.
    """
    retryable = tuple(request.retryable_exceptions or ())
    return _finish_and_claim(retryable, request.per_user, request.limit is not None)


@cache
def _finish_and_claim(retryable: tuple[str, ...], per_user: bool, limited: bool) -> Select[Any]:
    finished = finish_many(True).returning(tasks.c.id).cte("finished")
    chosen = claim_candidates(retryable, per_user, limited, leaving=select(finished.c.id))
    claimed = _claiming(chosen, retryable, job=True, relaxed=False).cte("claimed")
    written = select(func.array_agg(finished.c.id)).scalar_subquery().label("written")
    one_row = select(literal(1).label("one")).subquery("one_row")
    return select(written, *claimed.c).select_from(one_row.outerjoin(claimed, true()))


@cache
def release_many(together: bool = False, started: bool = True) -> Update:
    """Hand an unfinished attempt back as NOT_FINISHED, or CANCELLED if it was (many rows).

    An attempt whose handler never started (``started`` False: a job still waiting for
    a thread) gives its claim back too: ``num_retries`` is what it was before, so the
    hand-back costs the task none of its ``max_retries``. The next claim's
    ``assigned_at`` still tells the two attempts apart.
    """
    cancelled = tasks.c.cancel_requested == true()
    values: dict[str, Any] = {
        "status": case((cancelled, Status.CANCELLED.value), else_=Status.NOT_FINISHED.value),
        "completed_at": case((cancelled, utcnow()), else_=tasks.c.completed_at),
    }
    if not started:
        values["num_retries"] = tasks.c.num_retries - 1
    return update(tasks).where(held(*ACTIVE, rows=json_rows() if together else None)).values(values)


def release_unstarted_many(together: bool = False) -> Update:
    """``release_many`` of attempts whose handler never started (their claim not counted)."""
    return release_many(together, started=False)


@cache
def heartbeat_many(together: bool = False) -> Update:
    """Keep an attempt alive; a task claimed again since is left alone (many rows)."""
    rows = json_rows() if together else None
    return update(tasks).where(held(*ACTIVE, rows=rows)).values(updated_at=utcnow())


@cache
def attempt_state() -> Select[UUID, Status]:
    """The task of one attempt and its status, if the attempt still holds it."""
    return select(tasks.c.id, tasks.c.status).where(held(*Status))


@cache
def report_progress() -> Update:
    """Record a running attempt's ``progress`` (also a heartbeat).

    Returns whether the task's cancellation was requested (no row: the attempt lost it).
    """
    progress = bindparam("progress", type_=tasks.c.progress.type)
    return (
        update(tasks)
        .where(held(Status.RUNNING))
        .values(progress=progress, updated_at=utcnow())
        .returning(tasks.c.cancel_requested)
    )


@cache
def cancel_requested() -> Select[bool]:
    """Whether a running attempt's task was cancelled (no row: the attempt lost it)."""
    return select(cast(tasks.c.cancel_requested, Boolean())).where(held(Status.RUNNING))


def purge(older_than: float, statuses: Sequence[Status] = FINISHED) -> Delete:
    """Delete finished tasks that ended more than ``older_than`` seconds ago."""
    return delete(tasks).where(purgeable(older_than, statuses))


def purgeable(older_than: float, statuses: Sequence[Status] = FINISHED) -> ColumnElement[bool]:
    """Finished tasks that ended more than ``older_than`` seconds ago (database clock)."""
    return and_(tasks.c.status.in_(statuses), tasks.c.completed_at < utcnow(-older_than))


# --- counts, kept by triggers (migration 0006) ---


@cache
def counts() -> Select[str, str, Any]:
    """Tasks per endpoint and status value, from ``task_counts`` (no row for none).

    The number is an ``int`` on SQLite and a ``Decimal`` on PostgreSQL (a sum of bigint).
    """
    number = func.sum(task_counts.c.tasks)
    return (
        select(task_counts.c.endpoint, task_counts.c.status, number)
        .group_by(task_counts.c.endpoint, task_counts.c.status)
        .having(number != 0)
    )


@cache
def compact_counts() -> Insert:
    """PostgreSQL: fold the rows of ``task_counts`` into one per endpoint and status.

    One statement: it deletes the rows of the endpoints and statuses that have more
    than one, except rows another compaction holds (``SKIP LOCKED``: two compactions
    never wait for each other), and inserts their sums. Rows the triggers add meanwhile
    are not in its snapshot and stay as they are. With nothing to fold it writes nothing.
    """
    counted = task_counts.c
    key = tuple_(counted.endpoint, counted.status)
    split = (
        select(counted.endpoint, counted.status)
        .group_by(counted.endpoint, counted.status)
        .having(func.count() > 1)
    )
    folded = select(counted.id).where(key.in_(split)).with_for_update(skip_locked=True)
    gone = (
        delete(task_counts)
        .where(counted.id.in_(folded))
        .returning(counted.endpoint, counted.status, counted.tasks)
        .cte("gone")
    )
    number = func.sum(gone.c.tasks)
    sums = (
        select(gone.c.endpoint, gone.c.status, number)
        .group_by(gone.c.endpoint, gone.c.status)
        .having(number != 0)
    )
    return (
        insert(task_counts)
        .from_select([counted.endpoint, counted.status, counted.tasks], sums)
        .add_cte(gone)
    )


# --- workers, as their heartbeats report them ---

WORKER_ROWS_KEPT = 3600.0
"""Seconds a silent worker's row is kept (it died without stopping) before it is removed."""


@cache
def worker_seen() -> Update:
    """A worker's heartbeat: its counts and the database clock (no row: a new worker)."""
    return (
        update(workers)
        .where(workers.c.id == bindparam("worker_id"))
        .values(
            last_heartbeat=utcnow(),
            running=bindparam("worker_running"),
            processed=bindparam("worker_processed"),
        )
    )


@cache
def worker_started() -> Insert:
    """A worker's first heartbeat."""
    return insert(workers).values(
        id=bindparam("worker_id"),
        hostname=bindparam("worker_hostname"),
        pid=bindparam("worker_pid"),
        concurrency=bindparam("worker_concurrency"),
        running=bindparam("worker_running"),
        processed=bindparam("worker_processed"),
    )


@cache
def workers_gone() -> Delete:
    """A stopped worker's row, and rows of workers silent for ``WORKER_ROWS_KEPT``."""
    return delete(workers).where(
        or_(
            workers.c.id == bindparam("worker_id"),
            workers.c.last_heartbeat < utcnow(-WORKER_ROWS_KEPT),
        )
    )
