"""A worker's writes over many attempts find their rows by primary key (PostgreSQL).

Results, heartbeats and hand-backs run one statement over all of a worker's attempts
(``queue_sql.json_rows``). Planned by its status test, such a statement would read every
index entry of that status, and entries of rows that moved on pile up between vacuums:
a bitmap scan reads each of them every time and never marks them dead. Measured on a
busy queue, the result statement of 10 tasks read about 39,000 entries and took 1.6 to
2.4 ms of the server, against 0.2 ms by primary key.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import text

from aana.configs.db import DbSettings
from aana.sdk import AanaSDK
from aana.storage.models.task import Status
from aana.storage.queue_sql import ClaimRequest
from aana.tasks.manager import Job, QueueManager
from tests.helpers import statements_sent

TASKS = 2000


@pytest.fixture
def pg(db: DbSettings) -> DbSettings:
    if db.datastore_type != "postgresql":
        pytest.skip("SQLite runs these statements once per attempt, each by primary key")
    return db


@pytest.fixture
def running(pg: DbSettings) -> tuple[QueueManager, list[Job]]:
    """A queue whose statistics were taken before any task ran, and its claimed jobs.

    As on a queue drained faster than autovacuum analyses it: the planner believes
    hardly any task is running, while every task has been claimed.
    """
    app = AanaSDK()
    app.defer_many("ep", [{} for _ in range(TASKS)])
    with pg.get_engine().connect() as connection:
        connection.execute(text("ANALYZE tasks"))
        connection.commit()
    manager = app.task_queue()
    _, jobs = manager.settle([], ClaimRequest(TASKS, 3, (), 0))
    assert len(jobs) == TASKS
    return manager, jobs  # claimed straight into RUNNING


@contextlib.contextmanager
def plans_of(pg: DbSettings, prefix: str) -> Iterator[list[Any]]:
    """Collect the plans of the statements starting with ``prefix`` run in the block.

    Each statement, as sent with its parameters, is explained on a connection of its own.
    """
    engine = pg.get_engine()
    plans: list[Any] = []
    with statements_sent(engine) as sent:
        yield plans
    captured = [(statement, params) for statement, params in sent if statement.startswith(prefix)]
    assert captured, f"no statement starting with {prefix!r} ran"
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        for statement, parameters in captured:
            cursor.execute(f"EXPLAIN (FORMAT JSON) {statement}", parameters)
            plans.append(cursor.fetchone()[0])
        raw.rollback()
    finally:
        raw.close()


def subtree(plan: Any, name: str | None) -> Any:
    """The node of ``plan`` that runs the CTE ``name`` (the whole plan if None)."""
    nodes = [plan[0]["Plan"]]
    while name is not None:
        node = nodes.pop()
        if node.get("Subplan Name") == f"CTE {name}":
            return node
        nodes.extend(node.get("Plans", []))
    return nodes[0]


def scans_of_tasks(node: Any) -> list[str]:
    """How each node under ``node`` that reads ``tasks`` reads it."""
    found = []
    nodes = [node]
    while nodes:
        node = nodes.pop()
        if node.get("Relation Name") == "tasks" or node.get("Index Name", "").startswith(
            ("pk_tasks", "ix_tasks", "uq_tasks")
        ):
            found.append(f"{node['Node Type']} {node.get('Index Name', '')}".strip())
        nodes.extend(node.get("Plans", []))
    return found


def assert_by_primary_key(plans: list[Any], cte: str | None = None) -> None:
    for plan in plans:
        scans = scans_of_tasks(subtree(plan, cte))
        assert any("pk_tasks" in scan for scan in scans), json.dumps(plan)
        assert all(
            "pk_tasks" in scan or scan in {"ModifyTable", "Bitmap Heap Scan"} for scan in scans
        ), scans


@pytest.mark.parametrize("write", ["finish", "finish and claim", "heartbeat", "release"])
def test_writes_over_many_attempts__find_their_rows_by_primary_key(
    pg: DbSettings, running: tuple[QueueManager, list[Job]], write: str
) -> None:
    manager, jobs = running
    attempts = [job.attempt for job in jobs[:10]]
    outcomes = [(attempt, Status.COMPLETED, "done") for attempt in attempts]
    if write == "finish and claim":
        with plans_of(pg, "WITH finished") as plans:
            for per_user in (25, 0):
                written, _ = manager.settle(outcomes[:5], ClaimRequest(10, 3, (), per_user))
                assert len(written) == 5
                outcomes = outcomes[5:]
        assert_by_primary_key(plans, cte="finished")
        for plan in plans:  # and the claim reads the claim-order index, as alone
            claim = json.dumps(subtree(plan, "candidates"))
            assert "ix_tasks_claimable" in claim, claim
        return
    with plans_of(pg, "UPDATE tasks") as plans:
        if write == "finish":
            assert len(manager.finish(outcomes)) == len(attempts)
        elif write == "heartbeat":
            manager.heartbeat(attempts)
        else:
            assert len(manager.release(attempts)) == len(attempts)
    assert_by_primary_key(plans)
