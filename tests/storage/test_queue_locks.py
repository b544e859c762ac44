"""PostgreSQL: no queue statement waits for locks another transaction holds across the network.

Each test holds rows in a transaction left open (as a worker cut off mid-transaction
would) and checks that the other claimers, heartbeats and sweeps still finish. A blocked
call would never finish: the threads are joined with a generous bound only so that a
regression fails instead of hanging.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import func, select, update

from aana.configs.db import DbSettings
from aana.storage import queue_sql
from aana.storage.models import Status, TaskEntity
from aana.storage.repository import TaskRepository
from aana.storage.session import get_session

pytestmark = [
    pytest.mark.postgresql,
    pytest.mark.parametrize("db", ["postgresql"], indirect=True),
]


def finishes(call: Callable[[], Any]) -> Any:
    """The result of ``call`` run in a thread, which must not stay blocked."""
    results: list[Any] = []
    thread = threading.Thread(target=lambda: results.append(call()), daemon=True)
    thread.start()
    thread.join(timeout=30)
    assert not thread.is_alive(), "blocked by another transaction's locks"
    return results[0]


def saved(count: int, user_id: str | None = None) -> list[Any]:
    with get_session() as session:
        return [
            TaskRepository(session).save("ep", {"n": n}, user_id=user_id).id for n in range(count)
        ]


def claim(limit: int, per_user: int | None) -> list[Any]:
    with get_session() as session:
        tasks = TaskRepository(session).fetch_unprocessed_tasks(
            limit=limit, maximum_active_tasks_per_user=per_user
        )
        return [task.id for task in tasks]


def test_claims_with_a_per_user_limit__do_not_wait_for_an_open_claim(db: DbSettings):
    saved(4, user_id="alice")
    nobodys = saved(4)
    request = queue_sql.ClaimRequest(2, 1, None, 3)
    with db.get_engine().connect() as stuck:
        held = [row.id for row in stuck.execute(queue_sql.claim(request), request.parameters())]
        assert len(held) == 2  # claimed, not committed: its rows stay locked

        others = finishes(lambda: claim(limit=10, per_user=3))

        assert not set(others) & set(held)
        stuck.rollback()
    # Everything without a user, and what fits alice's room of 3 beside the 2 held (not
    # committed, so not counted): her first 3 tasks fit, of which the held 2 are skipped.
    assert set(nobodys) <= set(others)
    assert len(others) == 5


def test_heartbeat__skips_rows_another_transaction_holds(db: DbSettings):
    ids = saved(2)
    with get_session() as session:
        repository = TaskRepository(session)
        for task_id in ids:
            repository.update_status(task_id, Status.RUNNING)
    with db.get_engine().connect() as stuck:
        stuck.execute(select(TaskEntity.id).where(TaskEntity.id == ids[0]).with_for_update())

        def beat() -> None:
            with get_session() as session:
                TaskRepository(session).heartbeat(ids)

        finishes(beat)
        stuck.rollback()


def test_sweep__skips_rows_another_transaction_holds(db: DbSettings):
    ids = saved(2)
    engine = db.get_engine()
    with engine.begin() as connection:
        connection.execute(
            update(TaskEntity)
            .where(TaskEntity.id.in_(ids))
            .values(status=Status.RUNNING, assigned_at=func.now(), updated_at=func.now())
        )
    with engine.connect() as stuck:
        stuck.execute(select(TaskEntity.id).where(TaskEntity.id == ids[0]).with_for_update())

        def sweep() -> list[Any]:
            with get_session() as session:
                return TaskRepository(session).update_expired_tasks(
                    execution_timeout=0, heartbeat_timeout=0, max_retries=3
                )

        swept = finishes(sweep)
        stuck.rollback()
    assert [task.id for task in swept] == [ids[1]]
    assert swept[0].status is Status.NOT_FINISHED


def test_claim__stamps_the_statements_clock_not_the_transactions_start(db: DbSettings):
    (task_id,) = saved(1)
    request = queue_sql.ClaimRequest(1, 1, None, None)
    with db.get_engine().begin() as connection:
        began = connection.scalar(select(func.now()))
        connection.execute(select(func.pg_sleep(0.2)))
        (claimed,) = connection.execute(queue_sql.claim(request), request.parameters())
    assert claimed.id == task_id
    assert (claimed.assigned_at - began).total_seconds() >= 0.2
