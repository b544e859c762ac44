"""One repository test suite for both APIs: the sync repositories and their asyncio twins.

A test that takes the ``api`` fixture (parametrized ``sync`` / ``async``, on top of the
``db`` fixture's backends) builds repositories with ``api.VideoRepository(session)`` and
so on. With ``sync`` these are the sync classes on a ``Session``. With ``async`` they are
the ``Async...`` classes on an ``AsyncSession``, behind a thin proxy that runs each
awaited call to completion on one event loop kept for the whole test; the ``session``
fixture is then the ``AsyncSession`` behind the same kind of proxy, so the test's own
statements (``session.execute``, ``session.rollback``) go through asyncio too. The test
code is the same for both.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from aana.configs.db import DbSettings
from aana.storage import repository as repositories
from aana.storage.session import get_async_session, get_session

APIS = ["sync", "async"]


class Blocking:
    """A proxy of an async object whose coroutine methods run to completion when called."""

    def __init__(self, target: Any, runner: asyncio.Runner) -> None:
        self.target = target
        self.runner = runner

    def __getattr__(self, name: str) -> Any:
        value = getattr(self.target, name)
        if inspect.iscoroutinefunction(value):

            def blocking(*args: Any, **kwargs: Any) -> Any:
                return self.runner.run(value(*args, **kwargs))

            return blocking
        return value


class Api:
    """Repositories of one API, callable from sync test code (see the module's docstring)."""

    def __init__(self, name: str, db: DbSettings) -> None:
        self.name = name
        self.db = db
        self.runner = asyncio.Runner() if name == "async" else None
        self.sessions: list[Any] = []
        self.session = self.open_session()

    def open_session(self) -> Any:
        """A new session of this API (a proxy of an ``AsyncSession`` for ``async``)."""
        if self.runner is None:
            session: Any = get_session()
        else:
            session = Blocking(get_async_session(), self.runner)
        self.sessions.append(session)
        return session

    @contextmanager
    def new_session(self) -> Iterator[Any]:
        """``with get_session() as session`` of this API."""
        session = self.open_session()
        try:
            yield session
        finally:
            session.close()

    def __getattr__(self, name: str) -> Callable[..., Any]:
        """``api.VideoRepository(session, ...)``: the repository of this API."""
        sync_class = getattr(repositories, name)
        async_class = getattr(repositories, f"Async{name}")

        def build(session: Any, *args: Any, **kwargs: Any) -> Any:
            if isinstance(session, Session):  # a plain session of the test's own
                return sync_class(session, *args, **kwargs)
            assert isinstance(session, Blocking) and isinstance(session.target, AsyncSession)
            return Blocking(async_class(session.target, *args, **kwargs), session.runner)

        return build

    def run(self, coroutine: Any) -> Any:
        """Run a coroutine on this API's event loop (``async`` only)."""
        assert self.runner is not None
        return self.runner.run(coroutine)

    def close(self) -> None:
        for session in self.sessions:
            session.close()
        if self.runner is not None:
            self.runner.run(self.db.get_async_engine().dispose())
            self.runner.close()
