"""Bulk inserts of plain rows, in SQLAlchemy Core: no entities, no ORM.

``insert_rows`` sends rows given column by column as one bulk operation (PostgreSQL may
take them by ``COPY``); the queue's ``defer_many`` uses it, and ``aana.storage.bulk``
builds its entity inserts on it.
"""

from __future__ import annotations

import gc
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence, Sized
from contextlib import contextmanager
from typing import Any, cast

from sqlalchemy import Column, ColumnDefault, Connection, Dialect, Table

from aana.storage import dialects
from aana.storage.types import CheckedType


@contextmanager
def gc_paused() -> Iterator[None]:
    """Keep Python's cyclic garbage collector out of a block that makes many objects.

    Tens of thousands of new objects set it off again and again, each time walking all
    of them (it doubled a 100,000-row insert); none of them is garbage. It runs as usual
    once the block ends.
    """
    collecting = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if collecting:
            gc.enable()


def scalar_defaults_only(table: Table, given: Collection[str]) -> bool:
    """Whether every column not in ``given`` has no Python-side default or a constant one."""
    for column in table.c:
        default = column.default
        if column.key in given or default is None:
            continue
        if not (isinstance(default, ColumnDefault) and default.is_scalar):
            return False
    return True


def _bound(column: Column[Any], values: Iterable[Any], dialect: Dialect) -> Iterable[Any]:
    """The column's values checked and converted for the driver.

    Values of a type without a conversion are passed through as they are, unread: an
    iterator stays one (see ``insert_rows``).
    """
    if isinstance(column.type, CheckedType):
        return column.type.bind_many(values if isinstance(values, Sequence) else [*values], dialect)
    process = column.type.bind_processor(dialect)
    return values if process is None else [process(value) for value in values]


def insert_rows(
    connection: Connection,
    table: Table,
    columns: Mapping[str, Iterable[Any]],
    same: Mapping[str, Any] | None = None,
    encoded: Collection[str] = (),
    stream: bool = False,
    count: int | None = None,
) -> None:
    """Insert rows given column by column in one bulk operation, returning nothing.

    Values are checked and converted by their columns' types, except those of the
    ``encoded`` columns, already in the form the driver takes (JSON text, say). Columns
    not given take their scalar defaults (see ``scalar_defaults_only``); server defaults
    apply as usual. With ``stream``, PostgreSQL takes many rows by ``COPY`` (see
    ``aana.storage.dialects.insert_many``).

    Args:
        connection: The connection, in the transaction to insert in.
        table: The table.
        columns: Values by column key, one per row (all of the same length). They may
            be iterators, read while the rows are sent (with ``stream``, the server
            inserts the first rows meanwhile) unless their type converts them.
        same: Values by column key that every row takes.
        encoded: Keys of columns whose values are already converted for the driver.
        stream: Whether PostgreSQL may take the rows by ``COPY``, which engine events
            do not see.
        count: The number of rows; by default the length of the first column.

    """
    same = dict(same or {})
    if count is None:
        count = len(cast(Sized, next(iter(columns.values()))))
    for column in table.c:
        default = column.default
        if column.key in columns or column.key in same or default is None:
            continue
        if isinstance(default, ColumnDefault) and default.is_scalar:
            same[column.key] = default.arg
    dialect = connection.dialect
    names: list[str] = []
    converted: list[Iterable[Any]] = []
    for key, values in columns.items():
        column = table.c[key]
        converted.append(values if key in encoded else _bound(column, values, dialect))
        names.append(column.name)
    fixed: list[Any] = []
    for key, value in same.items():
        column = table.c[key]
        fixed.extend([value] if key in encoded else _bound(column, [value], dialect))
        names.append(column.name)
    rows: Iterable[tuple[Any, ...]] = zip(*converted, strict=True)
    if fixed:
        tail = tuple(fixed)  # the values every row takes, after its own
        rows = (row + tail for row in rows)
    dialects.insert_many(connection, table, names, rows, count, stream=stream)
