"""The generic repository: the verbs every entity gets."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Generic, TypeVar

from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectin_polymorphic
from sqlalchemy.orm.interfaces import ORMOption

from aana.exceptions.db import InvalidInputException, NotFoundException
from aana.storage.bulk import bulk_insert
from aana.storage.checks import check_page
from aana.storage.dialects import SQLITE_BEGIN_OPTION
from aana.storage.errors import OnViolation, translate_errors
from aana.storage.models.base import BaseEntity

T = TypeVar("T", bound=BaseEntity)


class BaseRepository(Generic[T]):
    """Create, read, list, count, update and delete entities of one class.

    Methods that write commit on success. On failure they roll the session back, so
    nothing is half-written and the session stays usable, and raise an aana exception.
    """

    def __init__(self, session: Session, model_class: type[T]) -> None:
        """Bind the repository to a session and an entity class.

        Args:
            session: The session to work in.
            model_class: The entity class (a subclass of ``BaseEntity``).

        """
        self.session = session
        self.model_class = model_class
        self.table_name: str = model_class.__tablename__

    def _has_pending_changes(self) -> bool:
        # Session.new/dirty/deleted build sets on every call; this asks the same, sooner
        # (an object changed and changed back counts as pending: the safe side).
        return not self.session._is_clean()

    def _end_transaction(self) -> None:
        """Commit without expiring loaded objects: nothing in them is out of date."""
        expire_on_commit = self.session.expire_on_commit
        self.session.expire_on_commit = False
        try:
            self.session.commit()
        finally:
            self.session.expire_on_commit = expire_on_commit

    @contextmanager
    def reading(self, action: str) -> Iterator[None]:
        """Run a read; in a short transaction of its own when the session has none open.

        Ending that transaction releases its snapshot: the next read sees what others
        committed since, and on SQLite the next write can take the write lock. A failed
        read rolls the session back (PostgreSQL refuses anything else until then) and
        raises an aana exception.
        """
        own_transaction = not self.session.in_transaction() and not self._has_pending_changes()
        try:
            with translate_errors(action):
                yield
        except BaseException:
            self.session.rollback()
            raise
        if own_transaction:
            self._end_transaction()

    @contextmanager
    def writing(self, action: str, on_violation: OnViolation | None = None) -> Iterator[None]:
        """Run a write: roll back and raise an aana exception if any part fails.

        A transaction left open by earlier reads is ended first, and the write begins
        afresh, on SQLite with the write lock taken up front: a transaction that has
        read cannot take it later if another writer committed meanwhile.
        """
        try:
            with translate_errors(action, on_violation):
                if self.session.in_transaction() and not self._has_pending_changes():
                    self._end_transaction()
                if not self.session.in_transaction():
                    self.session.connection(execution_options={SQLITE_BEGIN_OPTION: "IMMEDIATE"})
                yield
        except BaseException:
            self.session.rollback()
            raise

    def create(self, entity: T) -> T:
        """Insert one entity and commit.

        Returns:
            The entity, now persistent, with its generated values.

        """
        with self.writing(f"creating a {self.table_name}"):
            self.session.add(entity)
            self.session.commit()
        return entity

    def create_multiple(self, entities: Iterable[T]) -> list[T]:
        """Insert many entities in bulk (INSERT ... RETURNING, not a flush per object).

        Returns:
            The entities, in the order given, now persistent.

        """
        entities = list(entities)
        with self.writing(f"creating {len(entities)} rows of {self.table_name}"):
            bulk_insert(self.session, entities)
            self.session.commit()
        return entities

    def read(self, item_id: Any, check: bool = True) -> T:
        """The entity with this id.

        Raises:
            NotFoundException: No such entity and ``check`` is true.

        """
        try:
            with self.reading(f"reading {self.table_name} {item_id!r}"):
                entity = self.session.get(
                    self.model_class,
                    item_id,
                    options=self._subclass_columns(),
                    populate_existing=True,  # what is stored now, not what was loaded before
                )
        except InvalidInputException:
            entity = None  # an id no row can hold ("x" for an integer key): no such row
        if entity is None and check:
            raise NotFoundException(self.table_name, item_id)
        return entity  # type: ignore[return-value]

    def _subclass_columns(self) -> list[ORMOption]:
        """Loader options for the columns of this class's subclasses.

        An entity read through a parent class (a user's video read as a ``VideoEntity``)
        then has all its columns, even once the session is closed.
        """
        subclasses = [mapper.class_ for mapper in self.model_class.__mapper__.self_and_descendants]
        if len(subclasses) == 1:
            return []
        return [selectin_polymorphic(self.model_class, subclasses[1:])]

    def exists(self, item_id: Any) -> bool:
        """Whether an entity with this id exists (*ours*)."""
        primary_key = self.model_class.__mapper__.primary_key[0]
        query = select(primary_key).where(primary_key == item_id).limit(1)
        try:
            with self.reading(f"looking up {self.table_name} {item_id!r}"):
                return self.session.scalar(query) is not None
        except InvalidInputException:
            return False  # an id no row can hold

    def list(self, limit: int | None = 100, offset: int = 0) -> Sequence[T]:
        """Entities in primary-key order, a page at a time (*ours*).

        Raises:
            ValueError: ``limit`` or ``offset`` is negative; nothing is read.

        """
        check_page(limit, offset)
        primary_key = self.model_class.__mapper__.primary_key[0]
        query = (
            select(self.model_class)
            .options(*self._subclass_columns())
            .order_by(primary_key)
            .limit(limit)
            .offset(offset)
            .execution_options(populate_existing=True)
        )
        with self.reading(f"listing {self.table_name}"):
            return self.session.scalars(query).all()

    def count_all(self) -> int:
        """How many entities of this class exist (*ours*)."""
        query = select(func.count()).select_from(self.model_class)
        with self.reading(f"counting {self.table_name}"):
            return int(self.session.scalar(query) or 0)

    def update(self, item_id: Any, **values: Any) -> T:
        """Set attributes of the entity with this id and commit (*ours*).

        Raises:
            NotFoundException: No such entity.
            AttributeError: A name is not a mapped attribute of the entity.

        """
        mapped = self.model_class.__mapper__.attrs.keys()
        unknown = sorted(set(values) - set(mapped))
        if unknown:
            raise AttributeError(
                f"{self.model_class.__name__} has no attribute(s) {', '.join(unknown)}; "
                f"known: {', '.join(mapped)}"
            )
        with self.writing(f"updating {self.table_name} {item_id!r}"):
            entity = self.read(item_id)
            for name, value in values.items():
                setattr(entity, name, value)
            self.session.commit()
        return entity

    def delete(self, id: Any, check: bool = True) -> T | None:
        """Delete the entity with this id and commit.

        Returns:
            The deleted entity, or None if there was none and ``check`` is false.

        Raises:
            NotFoundException: No such entity and ``check`` is true.

        """
        with self.writing(f"deleting {self.table_name} {id!r}"):
            entity = self.read(id, check=check)
            if entity is None:
                return None
            self.session.delete(entity)
            self.session.commit()
        return entity
