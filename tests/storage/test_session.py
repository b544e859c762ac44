import os
import subprocess
import sys
import typing

from sqlalchemy import text
from sqlalchemy.orm import Session

from aana.configs.db import DbSettings
from aana.configs.settings import settings
from aana.storage.session import get_db, get_session


def test_get_session__follows_the_settings_at_call_time(tmp_path, monkeypatch):
    first = DbSettings(datastore_config={"path": str(tmp_path / "one.db")})
    second = DbSettings(datastore_config={"path": str(tmp_path / "two.db")})
    monkeypatch.setattr(settings, "db_config", first)
    with get_session() as session:
        assert session.get_bind() is first.get_engine()
    settings.db_config = second
    session = get_session()
    assert session.get_bind() is second.get_engine()
    assert session.execute(text("SELECT 1")).scalar() == 1
    session.close()
    first.get_engine().dispose()
    second.get_engine().dispose()


def test_get_db__yields_a_session_and_closes_it(db):
    generator = get_db()
    session = next(generator)
    assert isinstance(session, Session)
    session.execute(text("SELECT 1"))
    generator.close()
    assert not session.in_transaction()


def test_get_db_dependency__is_a_fastapi_dependency_on_get_db():
    from fastapi.params import Depends

    from aana.storage.session import GetDbDependency

    session_type, dependency = typing.get_args(GetDbDependency)
    assert session_type is Session
    assert isinstance(dependency, Depends) and dependency.dependency is get_db


def test_session_module__imports_without_fastapi(tmp_path):
    code = (
        "import sys; sys.modules['fastapi'] = None\n"
        "import aana.storage.session as s\n"
        "try:\n    s.GetDbDependency\nexcept ImportError as e:\n    print(e)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=os.environ
    )
    assert "pip install 'aana-storage[api]'" in out.stdout


def test_get_async_session__an_async_session_on_the_configured_async_engine(db):
    import asyncio

    from sqlalchemy.ext.asyncio import AsyncSession

    from aana.storage.session import get_async_session

    async def run() -> tuple:
        async with get_async_session() as session:
            assert isinstance(session, AsyncSession)
            assert session.bind is db.get_async_engine()
            assert session.sync_session.expire_on_commit is False
            one = (await session.execute(text("SELECT 1"))).scalar()
        await db.get_async_engine().dispose()
        return one, session.in_transaction()

    assert asyncio.run(run()) == (1, False)


def test_get_async_db__yields_an_async_session_and_closes_it(db):
    import asyncio

    from aana.storage.session import get_async_db

    async def run() -> bool:
        generator = get_async_db()
        session = await generator.__anext__()
        await session.execute(text("SELECT 1"))
        await generator.aclose()
        await db.get_async_engine().dispose()
        return session.in_transaction()

    assert asyncio.run(run()) is False


def test_async_db_dependency__is_a_fastapi_dependency_on_get_async_db():
    from fastapi.params import Depends
    from sqlalchemy.ext.asyncio import AsyncSession

    from aana.storage.session import AsyncDbDependency, get_async_db

    session_type, dependency = typing.get_args(AsyncDbDependency)
    assert session_type is AsyncSession
    assert isinstance(dependency, Depends) and dependency.dependency is get_async_db


def test_async_db_dependency__without_fastapi_says_what_to_install():
    code = (
        "import sys; sys.modules['fastapi'] = None\n"
        "import aana.storage.session as s\n"
        "try:\n    s.AsyncDbDependency\nexcept ImportError as e:\n    print(e)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=os.environ
    )
    assert "AsyncDbDependency needs FastAPI: pip install 'aana-storage[api]'" in out.stdout
