"""A worker's turn: results stored and the next tasks claimed, in one transaction.

On PostgreSQL the turn is one statement (``queue_sql.finish_and_claim``); on SQLite two,
in one write transaction on the driver's API (``test_turn_sqlite.py``). Both must store,
fence and claim alike.
"""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

import pytest
from sqlalchemy import text

from aana.configs.db import DbSettings
from aana.sdk import AanaSDK
from aana.storage import queue_sql
from aana.storage.models.task import Status
from aana.storage.queue_sql import Attempt, ClaimRequest
from aana.storage.repository import TaskRepository
from aana.storage.session import get_session
from aana.tasks.manager import Job, QueueManager
from tests.helpers import CLAIM_REQUESTS, mixed_queue, statements_sent


def claim_all(manager: QueueManager, count: int, per_user: int = 0) -> list[Job]:
    _, jobs = manager.settle([], ClaimRequest(count, 3, (), per_user))
    return jobs


def test_turn__stores_results_and_claims_the_next_tasks(db: DbSettings) -> None:
    app = AanaSDK()
    first = app.defer_many("ep", [{"n": n} for n in range(3)])
    manager = app.task_queue()
    running = claim_all(manager, 3)
    later = app.defer_many("ep", [{"n": n} for n in range(3, 5)])
    outcomes = [(job.attempt, Status.COMPLETED, {"n": job.data["n"]}) for job in running]
    written, jobs = manager.settle(outcomes, ClaimRequest(10, 3, (), 0))
    assert {str(task_id) for task_id in written} == set(first)
    assert sorted(str(job.id) for job in jobs) == sorted(later)
    assert all(job.attempt.assigned_at.utcoffset() is not None for job in jobs)
    for task_id in first:
        task = app.get_task(task_id)
        assert (task.status, task.result, task.progress) == (Status.COMPLETED, task.data, 1.0)
    assert {app.get_task(task_id).status for task_id in later} == {Status.RUNNING}


def test_turn__a_stale_attempt_is_not_written_and_the_rest_goes_on(db: DbSettings) -> None:
    app = AanaSDK()
    app.defer_many("ep", [{"n": n} for n in range(2)])
    manager = app.task_queue()
    fresh, stale = claim_all(manager, 2)
    waiting = app.defer("ep", {"n": 2})
    gone = Attempt(stale.id, stale.attempt.number, stale.attempt.assigned_at - timedelta(1))
    outcomes = [(fresh.attempt, Status.COMPLETED, "ok"), (gone, Status.COMPLETED, "late")]
    written, jobs = manager.settle(outcomes, ClaimRequest(5, 3, (), 0))
    assert written == {fresh.id}
    assert [str(job.id) for job in jobs] == [waiting]
    kept = app.get_task(str(stale.id))
    assert (kept.status, kept.result) == (Status.RUNNING, None)


def test_turn__nothing_to_claim_still_returns_what_was_written(db: DbSettings) -> None:
    app = AanaSDK()
    app.defer("ep", {})
    manager = app.task_queue()
    (job,) = claim_all(manager, 1)
    written, jobs = manager.settle([(job.attempt, Status.FAILED, "no")], ClaimRequest(5, 3, (), 0))
    assert (written, jobs) == ({job.id}, [])


def test_turn__a_per_user_limit_counts_the_results_stored_as_done(db: DbSettings) -> None:
    """Ann may run 2 tasks: the 2 she ran end in this turn, so 2 more are claimed."""
    app = AanaSDK()
    app.defer_many("ep", [{"n": n} for n in range(2)], user_id="ann")
    manager = app.task_queue()
    running = claim_all(manager, 10, per_user=2)
    assert len(running) == 2
    waiting = app.defer_many("ep", [{"n": n} for n in range(2, 5)], user_id="ann")
    outcomes = [(job.attempt, Status.COMPLETED, None) for job in running]
    written, jobs = manager.settle(outcomes, ClaimRequest(10, 3, (), 2))
    assert written == {job.id for job in running}
    assert len(jobs) == 2
    assert {str(job.id) for job in jobs} < set(waiting)
    # And a user at her limit with nothing ending gets nothing more.
    assert manager.settle([], ClaimRequest(10, 3, (), 2))[1] == []


def test_turn__task_counts_stay_exact(db: DbSettings) -> None:
    app = AanaSDK()
    app.defer_many("ep", [{"n": n} for n in range(6)])
    manager = app.task_queue()
    running = claim_all(manager, 4)
    outcomes = [
        (job.attempt, Status.COMPLETED if n % 2 else Status.FAILED, n)
        for n, job in enumerate(running)
    ]
    manager.settle(outcomes, ClaimRequest(1, 3, (), 0))
    with get_session() as session:
        counted = TaskRepository(session).count_by_endpoint()["ep"]
        rows = session.execute(text("SELECT status FROM tasks")).scalars()
        assert counted == dict(Counter(rows))
    assert counted == {"completed": 2, "failed": 2, "running": 1, "created": 1}


def test_turn__is_one_statement_on_postgresql(db: DbSettings) -> None:
    app = AanaSDK()
    app.defer_many("ep", [{"n": n} for n in range(4)])
    manager = app.task_queue()
    running = claim_all(manager, 2)
    outcomes = [(job.attempt, Status.COMPLETED, None) for job in running]
    with statements_sent(db.get_engine()) as statements:
        written, jobs = manager.settle(outcomes, ClaimRequest(2, 3, (), 25))
    sent = [statement for statement, _ in statements]
    assert (len(written), len(jobs)) == (2, 2)
    if db.datastore_type == "postgresql":
        assert len(sent) == 1
        assert sent[0].startswith("WITH finished AS")
    else:  # on the driver's API, in one write transaction (test_turn_sqlite.py)
        assert sent == []


@pytest.mark.parametrize("kind", CLAIM_REQUESTS)
def test_one_statement__claims_what_two_statements_claim(db: DbSettings, kind: str) -> None:
    """PostgreSQL's one statement against the finish and the claim run one after the other."""
    if db.datastore_type != "postgresql":
        pytest.skip("SQLite settles a turn in two statements")
    app = AanaSDK()
    for n, user in enumerate(["ann", "bob", None]):
        app.defer("ep", {"running": n}, user_id=user, priority=10)
    manager = app.task_queue()
    running = claim_all(manager, 3)
    engine = db.get_engine()
    mixed_queue(app, engine)
    results = [
        {
            **queue_sql.attempt_params(job.attempt),
            "new_status": Status.COMPLETED,
            "new_result": "done",
            "new_progress": 1.0,
            "retry_delay": None,
        }
        for job in running
    ]
    request = CLAIM_REQUESTS[kind]
    with engine.connect() as connection:  # two statements, rolled back
        finished = connection.execute(
            queue_sql.finish_many(True).returning(queue_sql.tasks.c.id),
            queue_sql.json_params(results),
        ).scalars()
        two_written = set(finished)
        two_claimed = connection.execute(
            queue_sql.claim(request, job=True), request.parameters()
        ).all()
        connection.rollback()
    outcomes = [(job.attempt, Status.COMPLETED, "done") for job in running]
    written, jobs = manager.settle(outcomes, request)
    assert two_claimed, "the request claims something"
    assert written == two_written == {job.id for job in running}
    assert sorted(str(job.id) for job in jobs) == sorted(str(row[0]) for row in two_claimed)
