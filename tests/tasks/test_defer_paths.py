"""``defer`` of one task: on PostgreSQL, on psycopg's own API (``aana.storage.queue_driver``).

The row it stores, and the errors it raises, are those of the Core statement
(``queue_sql.new_task``) that SQLite, and ``defer_many``'s short batches, run.
"""

import json
import uuid
from datetime import UTC, datetime

import pytest
from sqlalchemy import case, select

from aana.configs.db import DbSettings
from aana.configs.settings import Settings
from aana.exceptions.db import (
    DatabaseConnectionException,
    DatabaseException,
    InvalidJsonException,
)
from aana.sdk import AanaSDK
from aana.storage import checks, queue_sql
from aana.storage.models import TaskEntity
from tests.conftest import PG_SERVER, pg_admin
from tests.helpers import nested

# Every column but the id and the times a statement stamps ("now" differs between two).
COMPARED = [
    column
    for column in TaskEntity.__table__.c
    if column.name not in ("id", "created_at", "updated_at", "scheduled_at")
]


@pytest.fixture
def app(db: DbSettings) -> AanaSDK:
    return AanaSDK()


def stored_row(db: DbSettings, task_id: object) -> dict[str, object]:
    """The compared columns, and whether the task was due when stored (or when it is due)."""
    table = TaskEntity.__table__
    due = table.c.scheduled_at
    when = case((due == table.c.created_at, None), else_=due).label("due")
    with db.get_engine().connect() as connection:
        row = connection.execute(select(*COMPARED, when).where(table.c.id == task_id)).one()
    return dict(row._mapping)


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"priority": 7, "user_id": "ann"},
        {"schedule_at": datetime(2031, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)},
    ],
    ids=["plain", "priority-and-user", "scheduled-at"],
)
def test_defer__stores_the_row_of_the_core_statement(
    app: AanaSDK, db: DbSettings, options: dict[str, object]
) -> None:
    data = {"text": "héllo 😀", "n": [1, 2.5, None, True]}
    deferred = app.defer("ep", data, **options)
    core_id = uuid.uuid4()
    at = options.get("schedule_at")
    values = {
        "id": core_id,
        "endpoint": "ep",
        "data": checks.json_text(data, "task data"),
        "priority": options.get("priority", 0),
        "user": options.get("user_id"),
        "at": at,
        "delay": 0.0,
    }
    with db.get_engine().begin() as connection:
        connection.execute(queue_sql.new_task(), values)
    assert stored_row(db, uuid.UUID(deferred)) == stored_row(db, core_id)


def test_defer__schedule_in_is_counted_from_the_database_clock(
    app: AanaSDK, db: DbSettings
) -> None:
    task_id = app.defer("ep", {}, schedule_in=3600)
    with db.get_engine().connect() as connection:
        created, due = connection.execute(
            select(TaskEntity.created_at, TaskEntity.scheduled_at).where(
                TaskEntity.id == uuid.UUID(task_id)
            )
        ).one()
    assert (due - created).total_seconds() == pytest.approx(3600, abs=1)


def test_defer__connections_the_server_ended_fail_once_then_defer_works_again(
    app: AanaSDK, db: DbSettings
) -> None:
    """As after a server restart: every idle connection of the pool is dead."""
    if db.datastore_type != "postgresql":
        pytest.skip("SQLite has no server to end a connection")
    engine = db.get_engine()
    with engine.connect() as first, engine.connect() as second:  # two idle in the pool
        pids = [c.connection.driver_connection.info.backend_pid for c in (first, second)]  # type: ignore[union-attr]
    with pg_admin() as admin:
        for pid in pids:
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
    with pytest.raises(DatabaseException, match="deferring a task failed"):
        app.defer("ep", {"n": 1})
    second_id = app.defer("ep", {"n": 2})  # no dead connection is left in the pool
    third_id = app.defer("ep", {"n": 3})
    assert [app.get_task(i).data for i in (second_id, third_id)] == [{"n": 2}, {"n": 3}]


def test_defer__unreachable_server__connection_error_without_the_password() -> None:
    unreachable = DbSettings(
        datastore_type="postgresql",
        datastore_config={**PG_SERVER, "port": 1, "password": "s3cret-word", "database": "x"},
        connection_timeout=2,
    )
    app = AanaSDK(settings=Settings(db_config=unreachable))
    with pytest.raises(DatabaseConnectionException, match="Cannot connect") as raised:
        app.defer("ep", {})
    assert "s3cret-word" not in str(raised.value)


def test_defer__a_refused_insert_is_a_database_exception_naming_the_action(
    app: AanaSDK, db: DbSettings
) -> None:
    with db.get_engine().begin() as connection:
        if db.datastore_type == "postgresql":
            connection.exec_driver_sql(
                "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS "
                "$$ BEGIN RAISE EXCEPTION 'refused by a trigger'; END $$"
            )
            connection.exec_driver_sql(
                "CREATE TRIGGER refuse BEFORE INSERT ON tasks "
                "FOR EACH ROW EXECUTE FUNCTION refuse()"
            )
        else:
            connection.exec_driver_sql(
                "CREATE TRIGGER refuse BEFORE INSERT ON tasks "
                "BEGIN SELECT RAISE(ABORT, 'refused by a trigger'); END"
            )
    # SQLite reports RAISE(ABORT) as a broken constraint, without its text.
    said = "refused by a trigger" if db.datastore_type == "postgresql" else "constraint"
    with pytest.raises(DatabaseException, match=f"deferring a task failed: .*{said}"):
        app.defer("ep", {})


@pytest.mark.parametrize(
    "value",
    [
        # escaped as a surrogate pair: walked, accepted
        pytest.param({"text": "😀 beyond the BMP"}, id="emoji"),
        # looks like an escaped NUL: walked, accepted
        pytest.param({"text": "a backslash then u0000: \\u0000"}, id="backslash-u0000"),
        pytest.param({"key \x00": 1}, id="nul-in-key"),
        pytest.param(["lone \ud800 surrogate"], id="lone-surrogate"),
        pytest.param({"n": float("nan")}, id="nan"),
        pytest.param({1.5: "float key", None: "null key", True: "bool key"}, id="scalar-keys"),
        pytest.param({(1, 2): "tuple key"}, id="tuple-key"),
        pytest.param({"set": {1, 2}}, id="set"),
        pytest.param(nested(499), id="nested-500"),  # 500 levels: the deepest allowed
        pytest.param(nested(500), id="nested-501"),
        pytest.param(nested(100_000), id="nested-100000"),
        pytest.param("x" * 5000, id="long-text"),
    ],
)
def test_json_text__the_encoder_first_agrees_with_the_walk(value: object) -> None:
    """Task data is encoded first and walked only when the text leaves a doubt."""
    try:
        checks.check_json(value, "task data")
        expected: object = json.dumps(value, allow_nan=False)
    except InvalidJsonException as error:
        expected = (type(error), str(error))
    try:
        got: object = checks.json_text(value, "task data")
    except InvalidJsonException as error:
        got = (type(error), str(error))
    assert got == expected
