import asyncio

from sqlalchemy import select

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
