"""Sessions bound to the configured database, for threads and for asyncio."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any

from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

if TYPE_CHECKING:
    from typing import Annotated

    from fastapi import Depends

__all__ = [
    "AsyncDbDependency",
    "GetDbDependency",
    "get_async_db",
    "get_async_session",
    "get_db",
    "get_session",
]


def get_session() -> Session:
    """A new session on the engine of ``settings.db_config`` as it is now.

    Use it plainly or as ``with get_session() as session:``. Objects stay readable after
    a commit (``expire_on_commit=False``), so a repository's result can be used after
    the session ends.
    """
    from aana.configs.settings import settings

    return Session(bind=settings.db_config.get_engine(), expire_on_commit=False)


def get_db() -> Iterator[Session]:
    """Yield a session and close it afterwards: a dependency for FastAPI and the like."""
    with get_session() as session:
        yield session


def get_async_session() -> AsyncSession:
    """A new asyncio session on the async engine of ``settings.db_config`` as it is now.

    Use it as ``async with get_async_session() as session:`` (or close it with
    ``await session.close()``), one per task: like any ``AsyncSession``, it must not be
    shared by coroutines running at the same time. Objects stay readable after a commit
    (``expire_on_commit=False``).
    """
    from aana.configs.settings import settings

    return AsyncSession(bind=settings.db_config.get_async_engine(), expire_on_commit=False)


async def get_async_db() -> AsyncIterator[AsyncSession]:
    """Yield an asyncio session and close it afterwards: a dependency for FastAPI."""
    async with get_async_session() as session:
        yield session


if TYPE_CHECKING:
    GetDbDependency = Annotated[Session, Depends(get_db)]
    AsyncDbDependency = Annotated[AsyncSession, Depends(get_async_db)]

_DEPENDENCIES: dict[str, tuple[type[Any], Any]] = {
    "GetDbDependency": (Session, get_db),
    "AsyncDbDependency": (AsyncSession, get_async_db),
}


def __getattr__(name: str) -> Any:
    # FastAPI is an optional extra: build the dependencies only when they are asked for.
    if name in _DEPENDENCIES:
        try:
            from typing import Annotated

            from fastapi import Depends
        except ImportError as error:
            raise ImportError(f"{name} needs FastAPI: pip install 'aana-storage[api]'") from error
        session_class, provider = _DEPENDENCIES[name]
        dependency = Annotated[session_class, Depends(provider)]  # type: ignore[valid-type]
        globals()[name] = dependency
        return dependency
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
