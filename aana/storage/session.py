"""Sessions bound to the configured database."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from sqlalchemy.orm import Session

if TYPE_CHECKING:
    from typing import Annotated

    from fastapi import Depends

__all__ = ["GetDbDependency", "get_db", "get_session"]


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


if TYPE_CHECKING:
    GetDbDependency = Annotated[Session, Depends(get_db)]


def __getattr__(name: str) -> Any:
    # FastAPI is an optional extra: build the dependency only when it is asked for.
    if name == "GetDbDependency":
        try:
            from typing import Annotated

            from fastapi import Depends
        except ImportError as error:
            raise ImportError(
                "GetDbDependency needs FastAPI: pip install 'aana-storage[api]'"
            ) from error
        dependency = Annotated[Session, Depends(get_db)]
        globals()["GetDbDependency"] = dependency
        return dependency
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
