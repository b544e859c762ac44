"""The repositories for asyncio: every method of the sync class, awaited.

Each async class is generated from its sync twin, so the two cannot drift apart: for
every public method of the sync class it gets an ``async def`` of the same name and
signature that runs the sync method on ``AsyncSession.run_sync`` (SQLAlchemy's bridge:
the sync code runs in a greenlet, and each database call it makes is awaited on the
event loop). Errors, atomicity and results are the sync method's own; nothing of a
repository's logic exists twice.

Entities come back loaded (subclass columns too): reading their attributes never
lazy-loads, so never raises ``MissingGreenlet``. Relationships of an application's own
entities are not loaded by the repositories: give them an eager loader
(``lazy="selectin"``) or await them with SQLAlchemy's ``AsyncAttrs``.

Declare an application's async repository by subclassing one of these, either writing
``async def`` methods that await the inherited ones (see ``ExtendedVideoRepository`` in
the README), or naming the application's sync repository, whose public methods then
all get async twins::

    class AsyncExtendedVideoRepository(
        AsyncVideoRepository[ExtendedVideoEntity], sync=ExtendedVideoRepository
    ):
        pass
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

from sqlalchemy import inspect as inspect_entity
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from aana.storage.models.base import BaseEntity
from aana.storage.models.caption import CaptionEntity
from aana.storage.models.media import MediaEntity
from aana.storage.models.task import TaskEntity
from aana.storage.models.transcript import TranscriptEntity
from aana.storage.models.video import VideoEntity
from aana.storage.repository.base import BaseRepository
from aana.storage.repository.caption import CaptionRepository
from aana.storage.repository.media import MediaRepository
from aana.storage.repository.task import TaskRepository
from aana.storage.repository.transcript import TranscriptRepository
from aana.storage.repository.video import VideoRepository

__all__ = [
    "SYNC_ONLY",
    "AsyncBaseRepository",
    "AsyncCaptionRepository",
    "AsyncMediaRepository",
    "AsyncTaskRepository",
    "AsyncTranscriptRepository",
    "AsyncVideoRepository",
    "twin_methods",
]

T = TypeVar("T", bound=BaseEntity)
M = TypeVar("M", bound=MediaEntity)
V = TypeVar("V", bound=VideoEntity)
Tr = TypeVar("Tr", bound=TranscriptEntity)
C = TypeVar("C", bound=CaptionEntity)
R = TypeVar("R")

SYNC_ONLY = frozenset({"reading", "writing", "writing_one_statement"})
"""Public methods of the sync repositories that get no async twin: context managers in
which a sync method's statements run; an async method uses them through ``run_sync``."""


def twin_methods(sync_class: type[BaseRepository[Any]]) -> list[str]:
    """The names of the public methods of ``sync_class`` that its async twin awaits."""
    return sorted(
        name
        for name, _ in inspect.getmembers(sync_class, inspect.isfunction)
        if not name.startswith("_") and name not in SYNC_ONLY
    )


class AsyncBaseRepository(Generic[T]):
    """``BaseRepository`` for asyncio: the same verbs, awaited, on an ``AsyncSession``.

    Attributes:
        session: The ``AsyncSession`` the repository works in.
        sync: The sync repository doing the work, on ``session.sync_session``.
        model_class: The entity class.
        table_name: Its table.

    """

    sync_class: ClassVar[type[BaseRepository[Any]]] = BaseRepository
    """The sync repository whose methods this class awaits."""

    session: AsyncSession
    sync: BaseRepository[T]
    model_class: type[T]
    table_name: str

    if TYPE_CHECKING:
        # The methods are generated at class creation (see the module's docstring):
        # type checkers see the constructor and the twins as accepting anything.

        def __init__(self, session: AsyncSession, *args: Any, **kwargs: Any) -> None: ...

        def __getattr__(self, name: str) -> Any: ...

    def __init_subclass__(
        cls, sync: type[BaseRepository[Any]] | None = None, **kwargs: Any
    ) -> None:
        """Generate the async twins of the methods of ``sync`` (if given) not written here."""
        super().__init_subclass__(**kwargs)
        if sync is not None:
            _add_twins(cls, sync)

    async def run_sync(self, work: Callable[[Any], R]) -> R:
        """Run ``work(sync_repository)`` in the session's greenlet and return its result.

        For an application's async method made of several steps of the sync repository
        (in one of its ``writing`` blocks, say): ``work`` is plain sync code, and every
        database call in it is awaited on the event loop. Entities it returns (alone or
        in a list) come back with their columns loaded.
        """

        def call(session: Session) -> R:
            result = work(self.sync)
            _load_expired(session, result)
            return result

        return await self.session.run_sync(call)


def _load_expired(session: Session, result: Any) -> None:
    """Load the expired columns of the entities in ``result``, inside the greenlet.

    A session with ``expire_on_commit=True`` expires them on commit; read outside the
    greenlet they would have to be lazy-loaded, which asyncio cannot do.
    """
    entities = result if isinstance(result, list | tuple) else (result,)
    for entity in entities:
        if isinstance(entity, BaseEntity):
            state = inspect_entity(entity)
            if state.expired_attributes and state.persistent:
                session.refresh(entity)


def _add_twins(cls: type[AsyncBaseRepository[Any]], sync_class: type[BaseRepository[Any]]) -> None:
    """Give ``cls`` an async twin of each public method of ``sync_class`` it does not define."""
    cls.sync_class = sync_class
    own = vars(cls)
    if "__init__" not in own:
        type.__setattr__(cls, "__init__", _init_twin(cls, sync_class))
    for name in twin_methods(sync_class):
        if name not in own:
            type.__setattr__(cls, name, _method_twin(cls, name, getattr(sync_class, name)))


def _init_twin(
    cls: type[AsyncBaseRepository[Any]], sync_class: type[BaseRepository[Any]]
) -> Callable[..., None]:
    def __init__(
        self: AsyncBaseRepository[Any], session: AsyncSession, /, *args: Any, **kwargs: Any
    ) -> None:
        if not isinstance(session, AsyncSession):
            raise TypeError(
                f"{type(self).__name__} takes an AsyncSession (get_async_session()), got "
                f"{type(session).__name__}; with a Session, use {type(self).sync_class.__name__}"
            )
        self.session = session
        self.sync = type(self).sync_class(session.sync_session, *args, **kwargs)
        self.model_class = self.sync.model_class
        self.table_name = self.sync.table_name

    signature = inspect.signature(sync_class.__init__)
    self_parameter, session_parameter, *others = signature.parameters.values()
    session_parameter = session_parameter.replace(annotation="AsyncSession")
    __init__.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=[self_parameter, session_parameter, *others]
    )
    __init__.__qualname__ = f"{cls.__qualname__}.__init__"
    __init__.__doc__ = (
        f"Bind the repository to an ``AsyncSession``; the other arguments are those of "
        f"``{sync_class.__name__}``."
    )
    return __init__


def _method_twin(
    cls: type[AsyncBaseRepository[Any]], name: str, sync_method: Callable[..., Any]
) -> Callable[..., Any]:
    async def twin(self: AsyncBaseRepository[Any], /, *args: Any, **kwargs: Any) -> Any:
        return await self.run_sync(lambda repository: getattr(repository, name)(*args, **kwargs))

    twin.__name__ = name
    twin.__qualname__ = f"{cls.__qualname__}.{name}"
    twin.__module__ = cls.__module__
    twin.__signature__ = inspect.signature(sync_method)  # type: ignore[attr-defined]
    sync_doc = inspect.getdoc(sync_method) or ""
    twin.__doc__ = f"``{sync_method.__qualname__}``, awaited.\n\n{sync_doc}".rstrip()
    return twin


_add_twins(AsyncBaseRepository, BaseRepository)


class AsyncMediaRepository(AsyncBaseRepository[M], sync=MediaRepository):
    """``MediaRepository`` for asyncio: every method, awaited."""


class AsyncVideoRepository(AsyncMediaRepository[V], sync=VideoRepository):
    """``VideoRepository`` for asyncio: every method, awaited; subclass it for your videos."""


class AsyncTranscriptRepository(AsyncBaseRepository[Tr], sync=TranscriptRepository):
    """``TranscriptRepository`` for asyncio: every method, awaited."""


class AsyncCaptionRepository(AsyncBaseRepository[C], sync=CaptionRepository):
    """``CaptionRepository`` for asyncio: every method (``save_all``'s bulk insert too), awaited."""


class AsyncTaskRepository(AsyncBaseRepository[TaskEntity], sync=TaskRepository):
    """``TaskRepository`` for asyncio: every method (the task claim too), awaited."""
