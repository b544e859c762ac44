"""A worker's claim alone (PostgreSQL): on psycopg's API, committed without waiting for the disk.

Results' commits still wait for it.
"""

import pytest
from sqlalchemy import text
from sqlalchemy.dialects import postgresql

from aana.configs.db import DbSettings
from aana.sdk import AanaSDK
from aana.storage import queue_sql
from aana.storage.models.task import Status
from aana.storage.queue_driver import DriverClaim
from aana.storage.queue_sql import ClaimRequest
from tests.helpers import CLAIM_REQUESTS, mixed_queue

SETTING = text("SELECT current_setting('synchronous_commit')")


@pytest.fixture
def pg(db: DbSettings) -> DbSettings:
    if db.datastore_type != "postgresql":
        pytest.skip("SQLite claims in a write transaction, and has no asynchronous commit")
    return db


def test_relaxed_claim__turns_synchronous_commit_off_for_its_own_transaction_only(
    pg: DbSettings,
) -> None:
    app = AanaSDK()
    app.defer("ep", {})
    request = ClaimRequest(1, 3, (), 0)
    with pg.get_engine().connect() as connection:
        assert connection.execute(SETTING).scalar_one() == "on"
        claimed = connection.execute(
            queue_sql.claim(request, job=True, relaxed=True), request.parameters()
        ).all()
        assert len(claimed) == 1
        assert connection.execute(SETTING).scalar_one() == "off"  # the same transaction
        connection.commit()
        assert connection.execute(SETTING).scalar_one() == "on"


def test_queue_claim_alone__relaxed_and_leaves_the_pooled_connection_as_it_was(
    pg: DbSettings,
) -> None:
    app = AanaSDK()
    first, second = app.defer("ep", {"n": 1}), app.defer("ep", {"n": 2})
    manager = app.task_queue()
    _, jobs = manager.settle([], ClaimRequest(1, 3, (), 0))  # a claim alone
    assert [str(job.id) for job in jobs] == [first]
    with pg.get_engine().connect() as connection:  # the connection the claim used
        assert connection.execute(SETTING).scalar_one() == "on"
        assert connection.connection.driver_connection.autocommit is False  # type: ignore[union-attr]
    # A result and a claim together: one transaction, committed durably.
    written, jobs = manager.settle(
        [(jobs[0].attempt, Status.COMPLETED, "done")], ClaimRequest(1, 3, (), 0)
    )
    assert {str(task_id) for task_id in written} == {first}
    assert [str(job.id) for job in jobs] == [second]
    assert app.get_task(first).result == "done"


def test_claims__only_the_claim_alone_is_relaxed() -> None:
    request = ClaimRequest(1, 3, (), 0)

    def sql(**options: bool) -> str:
        return str(queue_sql.claim(request, **options).compile(dialect=postgresql.dialect()))

    assert "set_config" in sql(job=True, relaxed=True)
    assert "set_config" not in sql(job=True)
    assert "set_config" not in sql()


@pytest.mark.parametrize("kind", CLAIM_REQUESTS)
def test_driver_claim__claims_what_the_core_statement_claims(pg: DbSettings, kind: str) -> None:
    """The worker's claim on psycopg's API against ``queue_sql.claim`` run by SQLAlchemy."""
    app = AanaSDK()
    engine = pg.get_engine()
    mixed_queue(app, engine)
    request = CLAIM_REQUESTS[kind]
    with engine.connect() as connection:  # the Core statement, rolled back
        core = connection.execute(queue_sql.claim(request, job=True), request.parameters()).all()
        connection.rollback()
    driver = DriverClaim(engine)(request)
    assert core, "the request claims something"
    # The same tasks, and the same columns but the claim's time (RETURNING has no order).
    assert sorted(row[:2] + row[3:] for row in driver) == sorted(row[:2] + row[3:] for row in core)
    assert all(row[2].utcoffset() is not None for row in driver)  # assigned_at, aware
    statuses = {
        str(task.id): task.status for task in map(app.get_task, [str(r[0]) for r in driver])
    }
    assert set(statuses.values()) == {Status.RUNNING}
