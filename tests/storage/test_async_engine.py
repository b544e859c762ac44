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
