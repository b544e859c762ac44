import asyncio

from sqlalchemy import event, select

from aana.storage.dialects import utcnow
from aana.storage.models import TaskEntity


def test_get_async_engine__same_rules_and_cached(db):
    engine = db.get_async_engine()
    assert engine is db.get_async_engine()
    assert "***" in str(engine.url) or engine.url.get_backend_name() == "sqlite"

    async def query() -> tuple:
        async with engine.connect() as connection:
            now = await connection.scalar(select(utcnow()))
            count = await connection.scalar(select(TaskEntity.id).limit(1))
        await engine.dispose()
        return now, count

    now, count = asyncio.run(query())
    assert now.tzinfo is not None and count is None


def test_task_repository__under_an_async_sessions_run_sync(db):
    from sqlalchemy.ext.asyncio import AsyncSession

    from aana.storage.models import Status
    from aana.storage.repository import TaskRepository

    engine = db.get_async_engine()

    async def run() -> tuple:
        async with AsyncSession(engine, expire_on_commit=False) as session:
            task = await session.run_sync(lambda s: TaskRepository(s).save("ep", {"n": 1}))
            done = await session.run_sync(
                lambda s: TaskRepository(s).update_status(task.id, Status.COMPLETED)
            )
            claimed = await session.run_sync(
                lambda s: TaskRepository(s).fetch_unprocessed_tasks(limit=1)
            )
        await engine.dispose()
        return done.status, claimed

    assert asyncio.run(run()) == (Status.COMPLETED, [])


def test_get_async_engine__same_connection_setup_as_the_sync_engine(db):
    """SQLite: aiosqlite with the pragmas and busy timeout; PostgreSQL: psycopg's async mode."""
    engine = db.get_async_engine()
    sync_engine = db.get_engine()
    if engine.dialect.name == "sqlite":
        questions = ["PRAGMA journal_mode", "PRAGMA synchronous", "PRAGMA foreign_keys"]
        questions.append("PRAGMA busy_timeout")
    else:
        questions = ["SHOW timezone", "SHOW statement_timeout", "SHOW application_name"]

    async def ask() -> list:
        async with engine.connect() as connection:
            answers = [await connection.exec_driver_sql(q) for q in questions]
            answers = [result.scalar() for result in answers]
        await engine.dispose()
        return answers

    with sync_engine.connect() as connection:
        expected = [connection.exec_driver_sql(q).scalar() for q in questions]
    assert asyncio.run(ask()) == expected
    assert engine.dialect.is_async
    assert engine.dialect.driver == ("aiosqlite" if engine.dialect.name == "sqlite" else "psycopg")
    if engine.dialect.name == "sqlite":
        assert expected == ["wal", 1, 1, db.connection_timeout * 1000]


def test_async_writes__begin_immediate_on_sqlite_reads_in_autocommit(db):
    from aana.core.models import Video
    from aana.storage.repository import AsyncVideoRepository
    from aana.storage.session import get_async_session

    engine = db.get_async_engine()
    sent: list[str] = []

    @event.listens_for(engine.sync_engine, "before_cursor_execute")
    def record(_connection, _cursor, statement, *_args) -> None:
        sent.append(statement.split()[0] + (" IMMEDIATE" if "IMMEDIATE" in statement else ""))

    async def run() -> None:
        async with get_async_session() as session:
            videos = AsyncVideoRepository(session)
            await videos.save(Video(url="https://example.com/v.mp4", media_id="v"))
            await videos.read("v")
        await engine.dispose()

    asyncio.run(run())
    if engine.dialect.name == "sqlite":
        # Two tables: one transaction, the write lock taken up front; the read alone.
        assert sent == ["BEGIN IMMEDIATE", "INSERT", "INSERT", "SELECT"]
    else:
        assert sent == ["INSERT", "INSERT", "SELECT"]
