"""Bulk inserts that return persistent entities without a unit-of-work flush per object.

The ORM's unit of work costs several times the driver's own time per row. Here values
travel column by column: each column is converted by its type once per value (or once
for all rows when it holds one value), the rows go to the driver in one executemany,
the ids come back in bulk, and the entities are registered in the session's identity
map as a query would load them: persistent, clean, and the very objects that
``session.get`` returns.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from itertools import repeat
from typing import Any, TypeVar

from sqlalchemy import Column, Connection, Table, select
from sqlalchemy.orm import Mapper, Session, configure_mappers
from sqlalchemy.orm.attributes import instance_state

from aana.storage import dialects
from aana.storage.dialects import utcnow
from aana.storage.loading import load_entities
from aana.storage.models.base import BaseEntity

E = TypeVar("E", bound=BaseEntity)


class Same:
    """One value for every row of a bulk insert."""

    def __init__(self, value: Any) -> None:
        self.value = value


class Encoded:
    """Values already in the form the driver takes (JSON text, say): not converted again."""

    def __init__(self, values: Sequence[Any]) -> None:
        self.values = values


Values = Sequence[Any] | Same | Encoded
"""A column's values: one per row, the ``Same`` value for all rows, or ``Encoded`` ones."""


def _python_values(values: Values, count: int) -> Iterable[Any]:
    if isinstance(values, Encoded):
        raise TypeError("values encoded for the driver cannot fill entities")
    return repeat(values.value, count) if isinstance(values, Same) else values


def _is_clock(column: Column[Any]) -> bool:
    return isinstance(getattr(column.server_default, "arg", None), utcnow)


def _defaults_known(column: Column[Any]) -> bool:
    """Whether the column's default can be computed here, before the insert.

    Scalars and callables that take no argument can; SQL expressions, sequences and
    callables that read the insert's context belong to the unit of work, and so do
    server defaults other than the clock (they would have to be read back).
    """
    if column.server_default is not None and not _is_clock(column):
        return False
    default = column.default
    if default is None or default.is_scalar:
        return True
    # SQLAlchemy wraps a callable taking no argument, keeping it as __wrapped__.
    return bool(default.is_callable and hasattr(default.arg, "__wrapped__"))  # type: ignore[attr-defined]


class BulkInsert:
    """How to insert rows of one single-table entity class and build its entities."""

    def __init__(self, mapper: Mapper[Any], table: Table) -> None:
        self.mapper = mapper
        self.table = table
        # This class's columns: with single-table inheritance the table may hold more.
        self.key_of = {
            column: attribute.key
            for attribute in mapper.column_attrs
            for column in attribute.columns
            if isinstance(column, Column) and column.table is table
        }
        (self.primary_key,) = table.primary_key.columns
        self.pk_key = self.key_of[self.primary_key]

    @classmethod
    def of(cls, entity_class: type[BaseEntity]) -> BulkInsert | None:
        """The bulk insert for a class, or None when only the unit of work fits it."""
        configure_mappers()  # instrumentation is complete only once mappers are configured
        mapper = entity_class.__mapper__
        table = mapper.local_table
        if len(mapper.tables) != 1 or not isinstance(table, Table):
            return None  # joined inheritance: rows span several tables
        if len(table.primary_key.columns) != 1:
            return None
        if not all(map(_defaults_known, table.c)):
            return None
        return cls(mapper, table)

    def _complete(self, columns: dict[str, Values], count: int, now: Any) -> None:
        """Add defaults, the polymorphic identity and the clock columns, in place."""
        discriminator = self.mapper.polymorphic_on
        if isinstance(discriminator, Column) and self.key_of.get(discriminator):
            columns.setdefault(self.key_of[discriminator], Same(self.mapper.polymorphic_identity))
        for column, key in self.key_of.items():
            if key in columns:
                continue
            if _is_clock(column):
                if now is not None:
                    columns[key] = Same(now)
            elif column.default is not None and column.default.is_scalar:
                columns[key] = Same(column.default.arg)  # type: ignore[attr-defined]
            elif column.default is not None and column.default.is_callable:
                make = column.default.arg  # type: ignore[attr-defined]
                columns[key] = [make(None) for _ in range(count)]

    def _insert_rows(self, connection: Connection, columns: dict[str, Values], count: int) -> None:
        dialect = connection.dialect
        names: list[str] = []
        converted: list[Iterator[Any]] = []
        for column in self.table.c:
            values = columns.get(self.key_of[column])
            if values is None:
                continue
            process = column.type.dialect_impl(dialect).bind_processor(dialect)
            if isinstance(values, Same):
                value = process(values.value) if process else values.value
                converted.append(repeat(value, count))
            elif isinstance(values, Encoded):
                converted.append(iter(values.values))
            else:
                converted.append(iter([process(v) for v in values] if process else values))
            names.append(column.name)
        dialects.insert_many(connection, self.table, names, list(zip(*converted, strict=False)))

    def insert(
        self, connection: Connection, columns: dict[str, Values], count: int, clock: bool = True
    ) -> None:
        """Insert ``count`` rows given column by column, completing ``columns`` in place.

        With ``clock`` the clock columns get the database's time, read once, so the
        entities can hold it; without, the database fills them in row by row.
        """
        self._complete(columns, count, connection.scalar(select(utcnow())) if clock else None)
        if self.pk_key in columns:
            self._insert_rows(connection, columns, count)
            return

        def insert_rows(ids: list[int] | None) -> None:
            if ids is not None:
                columns[self.pk_key] = ids
            self._insert_rows(connection, columns, count)

        columns[self.pk_key] = dialects.insert_with_new_ids(
            connection, self.table, self.primary_key, count, insert_rows
        )

    def build(self, session: Session, columns: dict[str, Values], count: int) -> list[Any]:
        """Persistent, clean entities holding the inserted values, in row order."""
        per_row = [_python_values(values, count) for values in columns.values()]
        rows = zip(*per_row, strict=False)
        return load_entities(session, self.mapper, list(columns), rows, inserted=True)


def bulk_insert_columns(
    session: Session, entity_class: type[E], columns: dict[str, Values], count: int
) -> list[E]:
    """Insert ``count`` rows given column by column and return their entities.

    The entities are built without ``__init__`` (validate values beforehand) and are
    persistent in ``session``, in row order.
    """
    if count == 0:
        return []
    bulk = BulkInsert.of(entity_class)
    if bulk is None:
        keys = list(columns)
        per_row = zip(*(_python_values(values, count) for values in columns.values()), strict=True)
        rows = [dict(zip(keys, row, strict=True)) for row in per_row]
        entities = [entity_class(**row) for row in rows]
        bulk_insert(session, entities)
        return entities
    columns = dict(columns)
    bulk.insert(session.connection(), columns, count)
    return bulk.build(session, columns, count)


def _uniform_columns(bulk: BulkInsert, group: Sequence[BaseEntity]) -> dict[str, Values] | None:
    """The entities' values column by column, or None when the unit of work must insert them.

    It must when the entities set different attributes (each would need its own
    defaults), set a relationship (its objects cascade), or give only some of them ids.
    """
    states = [instance_state(entity).dict for entity in group]
    keys = set(states[0]) - {"_sa_instance_state"}
    if any(set(state) - {"_sa_instance_state"} != keys for state in states):
        return None
    if not keys <= set(bulk.mapper.column_attrs.keys()):
        return None
    columns: dict[str, Values] = {key: [state[key] for state in states] for key in keys}
    ids = [state.get(bulk.pk_key) for state in states]
    if all(row_id is None for row_id in ids):
        columns.pop(bulk.pk_key, None)  # the database or the key's default will give them
    elif None in ids:
        return None
    return columns


def bulk_insert(session: Session, entities: Sequence[BaseEntity]) -> None:
    """Insert ``entities`` in bulk and make them persistent in ``session``."""
    by_class: dict[type[BaseEntity], list[BaseEntity]] = {}
    for entity in entities:
        by_class.setdefault(type(entity), []).append(entity)
    for entity_class, group in by_class.items():
        bulk = BulkInsert.of(entity_class)
        columns = _uniform_columns(bulk, group) if bulk else None
        if bulk is None or columns is None:
            session.add_all(group)
            session.flush()
            continue
        bulk.insert(session.connection(), columns, len(group))
        identity_map = session.identity_map
        keys = list(columns)
        per_row = zip(*(_python_values(v, len(group)) for v in columns.values()), strict=True)
        for entity, row in zip(group, per_row, strict=True):
            state = instance_state(entity)
            state.dict.update(zip(keys, row, strict=True))
            state.key = (bulk.mapper.class_, (state.dict[bulk.pk_key],), None)
            state._commit_all(state.dict)  # the values set in __init__ are now stored
            state.session_id = session.hash_key
            identity_map.add(state)
