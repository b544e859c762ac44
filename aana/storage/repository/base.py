"""The generic repository: the verbs every entity gets."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Generic, TypeVar

from sqlalchemy import Dialect, Select, bindparam, func, select
from sqlalchemy.orm import Session, selectin_polymorphic
from sqlalchemy.orm.interfaces import ORMOption

from aana.exceptions.db import (
    InvalidInputException,
    NotFoundException,
    UnknownPolymorphicIdentityError,
)
from aana.storage.bulk import insert_entity, insert_entity_fits
from aana.storage.checks import check_page
from aana.storage.dialects import (
    READS_ALONE_OPTION,
    autocommit_options,
    in_driver_transaction,
    read_alone,
    reads_alone_options,
    write_options,
)
from aana.storage.errors import OnViolation, translate_errors
from aana.storage.models.base import BaseEntity

T = TypeVar("T", bound=BaseEntity)


_FRESH = {"populate_existing": True}


@functools.cache
def _select_by_id(model_class: type[BaseEntity], classes: int) -> Select[Any] | None:
    """``SELECT`` of one entity by its id (``:id``), subclass columns loaded too.

    Cached per class and number of mapped subclasses (a subclass mapped later gets a new
    statement); None for a composite primary key.
    """
    del classes  # part of the cache key only
    mapper = model_class.__mapper__
    if len(mapper.primary_key) != 1:
        return None
    query = select(model_class).where(mapper.primary_key[0] == bindparam("id"))
    subclasses = [sub.class_ for sub in mapper.self_and_descendants][1:]
    if subclasses:
        query = query.options(selectin_polymorphic(model_class, subclasses))
    return query


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
        session = self.session
        return bool(session.new or session.dirty or session.deleted)

    def _end_transaction(self) -> None:
        """Commit without expiring loaded objects: nothing in them is out of date."""
        expire_on_commit = self.session.expire_on_commit
        self.session.expire_on_commit = False
        try:
            self.session.commit()
        finally:
            self.session.expire_on_commit = expire_on_commit

    def _begin(self, options: Callable[[Dialect], dict[str, Any]]) -> None:
        """Begin the session's transaction on a connection with these execution options."""
        dialect = self.session.get_bind(self.model_class).dialect
        bind_arguments = {"mapper": self.model_class}
        self.session.connection(bind_arguments=bind_arguments, execution_options=options(dialect))

    @contextmanager
    def reading(self, action: str) -> Iterator[bool]:
        """Run a read; yields whether it runs alone, outside any transaction.

        Outside a transaction (and with nothing unsaved), the read runs in autocommit:
        one round trip, and it sees what others committed until now. The session stays
        in a transaction begun for such reads, so the next one costs nothing more; the
        first statement of another kind (a flush, a query of your own) begins a real
        transaction first. Inside a transaction of yours a read is part of it, as any
        query of the session. A failed read rolls the session back (PostgreSQL refuses
        anything else until then) and raises an aana exception.
        """
        alone = self._reading_alone()
        try:
            with translate_errors(action):
                if not alone and not self.session.in_transaction():
                    alone = not self._has_pending_changes()
                    if alone:
                        self._begin(reads_alone_options)
                if alone:
                    with read_alone():
                        yield True
                else:
                    yield False
        except BaseException as error:
            if alone:
                self._abandon()
            else:
                self.session.rollback()
            if isinstance(error, AssertionError):
                # SQLAlchemy's way of meeting a row of a subclass no imported model defines.
                self._refuse_unknown_identities(error)
            raise

    def _reading_alone(self) -> bool:
        """Whether the session's transaction was begun for reads alone, and still is."""
        session = self.session
        if not session.in_transaction() or not session.is_active:
            return False
        if self._has_pending_changes():
            return False
        connection = session.connection(bind_arguments={"mapper": self.model_class})
        if not connection.get_execution_options().get(READS_ALONE_OPTION):
            return False
        dbapi_connection = connection.connection.dbapi_connection
        return not in_driver_transaction(dbapi_connection, connection.dialect)

    def _refuse_unknown_identities(self, error: AssertionError) -> None:
        """Raise ``UnknownPolymorphicIdentityError`` if the table has rows of unknown subclasses."""
        mapper = self.model_class.__mapper__
        discriminator = mapper.polymorphic_on
        if discriminator is None:
            return
        with self.reading("checking the polymorphic identities"):
            stored = set(self.session.scalars(select(discriminator).distinct()))
        unknown = sorted(str(value) for value in stored - set(mapper.polymorphic_map))
        if unknown:
            table = mapper.base_mapper.class_.__tablename__
            raise UnknownPolymorphicIdentityError(
                table, unknown, self.model_class.__name__
            ) from error

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
                    self._begin(write_options)
                yield
        except BaseException:
            self.session.rollback()
            raise

    @contextmanager
    def writing_one_statement(
        self, action: str, on_violation: OnViolation | None = None
    ) -> Iterator[None]:
        """Run a write of one statement, committed when the block ends.

        One statement is atomic by itself: with nothing else unsaved it runs in
        autocommit (one round trip, no BEGIN and COMMIT). Otherwise it is a ``writing``
        transaction.
        """
        if self.session.in_transaction() and not self._has_pending_changes():
            try:
                with translate_errors(action):
                    self._end_transaction()
            except BaseException:
                self.session.rollback()
                raise
        if self.session.in_transaction():
            with self.writing(action, on_violation):
                yield
                self._end_transaction()
            return
        try:
            with translate_errors(action, on_violation):
                self._begin(autocommit_options)
                yield
        except BaseException:
            self._abandon()
            raise
        self._end_transaction()

    def _abandon(self) -> None:
        """End an autocommit block that failed: its one statement wrote nothing.

        The session's objects are left as they were (a rollback would expire them all),
        unless a failed flush needs the rollback to put the session right.
        """
        if self.session.is_active and not self._has_pending_changes():
            try:
                self._end_transaction()
                return
            except Exception:  # noqa: S110 - the rollback below covers it
                pass
        self.session.rollback()

    def create(self, entity: T) -> T:
        """Insert one entity and commit.

        Returns:
            The entity, now persistent, with its generated values.

        """
        return self._insert(entity, f"creating a {self.table_name}")

    def _insert(self, entity: T, action: str, on_violation: OnViolation | None = None) -> T:
        """Insert ``entity`` and commit; one statement runs in autocommit."""
        dialect = self.session.get_bind(self.model_class).dialect
        if self._has_pending_changes() or not insert_entity_fits(entity, dialect):
            with self.writing(action, on_violation):
                self.session.add(entity)
                self.session.commit()
            return entity
        if len(type(entity).__mapper__.tables) > 1:
            with self.writing(action, on_violation):
                insert_entity(self.session, entity)
                self._end_transaction()
            return entity
        with self.writing_one_statement(action, on_violation):
            insert_entity(self.session, entity)
        return entity

    def create_multiple(self, entities: Iterable[T]) -> list[T]:
        """Insert many entities in one transaction and commit.

        The unit of work sends rows of one table in batches (``INSERT ... VALUES`` of
        many rows), not a statement per object.

        Returns:
            The entities, in the order given, now persistent.

        """
        entities = list(entities)
        with self.writing(f"creating {len(entities)} rows of {self.table_name}"):
            self.session.add_all(entities)
            self.session.commit()
        return entities

    def read(self, item_id: Any, check: bool = True) -> T:
        """The entity with this id.

        Outside a transaction it is read afresh (one statement): what is stored now,
        even if the session loaded it before. Inside one, it is the session's as
        ``Session.get`` returns it.

        Raises:
            NotFoundException: No such entity and ``check`` is true.

        """
        try:
            with self.reading(f"reading {self.table_name} {item_id!r}") as alone:
                entity = self._get(item_id, fresh=alone)
        except InvalidInputException:
            entity = None  # an id no row can hold ("x" for an integer key): no such row
        if entity is None and check:
            raise NotFoundException(self.table_name, item_id)
        return entity  # type: ignore[return-value]

    def _get(self, item_id: Any, fresh: bool) -> T | None:
        """The entity with this id; ``fresh`` reads it from the database even if loaded."""
        if not fresh:
            return self.session.get(self.model_class, item_id, options=self._subclass_columns())
        subclasses = tuple(self.model_class.__mapper__.self_and_descendants)
        query = _select_by_id(self.model_class, len(subclasses))
        if query is None:  # a composite key: Session.get takes the tuple
            return self.session.get(
                self.model_class, item_id, options=self._subclass_columns(), populate_existing=True
            )
        # One statement built once per class and executed with the id bound: the ORM's
        # compiled cache finds it at once, cheaper than Session.get's per-call query.
        result = self.session.execute(query, {"id": item_id}, execution_options=_FRESH)
        return result.scalar_one_or_none()

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
            entity = self._get(item_id, fresh=True)
            if entity is None:
                raise NotFoundException(self.table_name, item_id)
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
            entity = self._get(id, fresh=True)
            if entity is None:
                if check:
                    raise NotFoundException(self.table_name, id)
                self._end_transaction()
                return None
            self.session.delete(entity)
            self.session.commit()
        return entity
