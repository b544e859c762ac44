"""Portable column types, defined once for every entity.

Every type here checks the values bound to it (``aana.storage.checks``) before they reach
the driver, so a value that one backend would refuse and another would store is refused
on both, with the same typed exception naming the column. The checks run wherever
SQLAlchemy binds a value: ORM flushes, Core statements (one row or many), bulk inserts
and the task queue's statements. A type learns its column's name when the column joins
its table (see ``_name_checked_columns``).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, Self

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    DateTime,
    Dialect,
    Double,
    Integer,
    SmallInteger,
    Table,
    event,
)
from sqlalchemy import String as SqlString
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.types import TypeDecorator, TypeEngine

from aana.exceptions.db import InvalidTypeException, InvalidValueException
from aana.storage import checks


class CheckedType(TypeDecorator[Any]):
    """A type that checks the values bound to it; ``column`` names it in messages."""

    cache_ok = True
    column: str | None = None

    def where(self) -> str:
        """The column, as messages name it."""
        return self.column or "a column"

    def named(self, column: str) -> Self:
        """A copy of this type that names ``column`` in its messages."""
        copy = self.copy()
        copy.column = column
        return copy

    def bind_many(self, values: Sequence[Any], dialect: Dialect) -> Sequence[Any]:
        """``values`` checked and converted for the driver, as binding each would.

        Bulk inserts bind a column's values together: where one pass over the list shows
        them all fine (``_all_storable``), they go as they are; otherwise each value is
        bound alone, and the first bad one raises its error.
        """
        if self._all_storable(values) and self._impl_passes_values(dialect):
            return values
        process = self.bind_processor(dialect)
        return values if process is None else [process(value) for value in values]

    def _all_storable(self, values: Sequence[Any]) -> bool:
        """Whether every value is known fine at a glance; False means "look closer"."""
        del values
        return False

    def _impl_passes_values(self, dialect: Dialect) -> bool:
        """Whether the underlying type hands values to the driver unchanged."""
        impl = dialect.type_descriptor(self.load_dialect_impl(dialect))
        return impl.bind_processor(dialect) is None

    @property
    def python_type(self) -> type[Any]:
        """The Python type of the values, as the underlying type says.

        SQLAlchemy 2.0's ``TypeDecorator`` does not ask it: say it here for both lines.
        """
        return self.impl_instance.python_type


class CheckedString(CheckedType):
    """Text that refuses lone surrogates and NUL characters (``String``)."""

    cache_ok = True
    impl = SqlString

    def __init__(self, length: int | None = None, *, column: str | None = None) -> None:
        """A string column, at most ``length`` characters long where the backend enforces it."""
        super().__init__(length)
        self.column = column

    def process_bind_param(self, value: Any, dialect: Dialect) -> str | None:
        """Check the text."""
        return None if value is None else checks.check_text(value, self.where())

    def _all_storable(self, values: Sequence[Any]) -> bool:
        return set(map(type, values)) <= {str} and checks.all_text_storable(values)


class CheckedInteger(CheckedType):
    """An integer that refuses values outside the column's width, in bits (``Integer``).

    The width follows the implementation: 16 bits for ``SmallInteger``, 64 for
    ``BigInteger`` (``CheckedBigInteger``), 32 otherwise, as PostgreSQL stores them.
    """

    cache_ok = True
    impl = Integer

    def __init__(self, *, column: str | None = None) -> None:
        """An integer column."""
        super().__init__()
        self.column = column

    @property
    def bits(self) -> int:
        """How wide the column's integers are."""
        impl = self.impl_instance
        if isinstance(impl, BigInteger):
            return 64
        return 16 if isinstance(impl, SmallInteger) else 32

    def process_bind_param(self, value: Any, dialect: Dialect) -> int | None:
        """Check the integer."""
        return None if value is None else checks.check_integer(value, self.where(), self.bits)

    def _all_storable(self, values: Sequence[Any]) -> bool:
        if not values or not set(map(type, values)) <= {int}:
            return False
        limit = 1 << (self.bits - 1)
        return bool(-limit <= min(values) and max(values) < limit)


class CheckedBigInteger(CheckedInteger):
    """A 64-bit integer (``BigInteger``) that refuses values outside that range."""

    cache_ok = True
    impl = BigInteger


class CheckedFloat(CheckedType):
    """A double-precision float that refuses NaN and ±infinity (``Double``)."""

    cache_ok = True
    impl = Double

    def __init__(self, *, column: str | None = None) -> None:
        """A float column."""
        super().__init__()
        self.column = column

    def process_bind_param(self, value: Any, dialect: Dialect) -> float | None:
        """Check the number."""
        return None if value is None else checks.check_float(value, self.where())

    def _all_storable(self, values: Sequence[Any]) -> bool:
        return set(map(type, values)) <= {float} and all(map(math.isfinite, values))

    def _impl_passes_values(self, dialect: Dialect) -> bool:
        # Where ``Double`` converts at all, it calls float(): floats pass unchanged.
        return True


class CheckedJson(CheckedType):
    """JSON everywhere; ``jsonb`` on PostgreSQL, where it can be indexed and queried.

    Refuses what cannot be stored as JSON on every backend (see ``checks.check_json``).
    Python's None is stored as JSON ``null``, as SQLAlchemy's ``JSON`` does.
    """

    cache_ok = True
    impl = JSON
    hashable = False

    def __init__(self, *, column: str | None = None) -> None:
        """A JSON column."""
        super().__init__()
        self.column = column
        self.should_evaluate_none = self.impl_instance.should_evaluate_none

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        """``jsonb`` on PostgreSQL, ``JSON`` elsewhere."""
        if dialect.name == "postgresql":
            return dialect.type_descriptor(JSONB())
        return dialect.type_descriptor(JSON())

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        """Check the value (``JSON.NULL`` stands for SQL NULL and passes as is)."""
        if value is None or value is JSON.NULL:
            return value
        return checks.check_json(value, self.where())


class UtcDateTime(CheckedType):
    """A timezone-aware UTC timestamp on every backend.

    PostgreSQL stores ``timestamptz``. SQLite stores fixed-width text
    (``YYYY-MM-DD HH:MM:SS.ffffff``, in UTC), which sorts and compares correctly as text
    and matches what ``aana.storage.dialects.utcnow`` renders. Naive datetimes are refused:
    their time zone would be a guess.
    """

    cache_ok = True
    impl = DateTime(timezone=True)

    def __init__(self, *, column: str | None = None) -> None:
        """A timestamp column."""
        super().__init__()
        self.column = column

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Check that a value is an aware datetime and convert it to UTC."""
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise InvalidTypeException(
                f"{self.where()} takes an aware datetime, got {type(value).__name__} "
                f"{value!r}; e.g. datetime.now(timezone.utc)",
                self.column,
            )
        if value.tzinfo is None:
            raise InvalidValueException(
                f"{self.where()}: naive datetime {value.isoformat()} has no time zone; "
                "pass an aware one, e.g. datetime.now(timezone.utc)",
                self.column,
            )
        return value.astimezone(UTC)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        """Return stored values as aware UTC datetimes."""
        return _as_utc(value)

    def result_processor(self, dialect: Dialect, coltype: Any) -> Callable[[Any], Any] | None:
        """One function per value, not two: timestamps are read by the thousand."""
        if dialect.name == "sqlite":
            # The text we store is ISO 8601: the C parser reads it several times faster
            # than the generic one SQLite's DateTime uses.
            return _parse_sqlite
        convert_stored = self.impl_instance.result_processor(dialect, coltype)
        if convert_stored is None:
            return _as_utc
        return lambda value: _as_utc(convert_stored(value))


def _parse_sqlite(value: str | None) -> datetime | None:
    if value is None:
        return None
    return _parse_sqlite_text(value)


@functools.lru_cache(maxsize=256)
def _parse_sqlite_text(value: str) -> datetime | None:
    # Rows written together share their timestamps: a bulk load parses each text once
    # (datetimes are immutable, so entities may share them).
    return _as_utc(datetime.fromisoformat(value))


def _as_utc(value: datetime | None) -> datetime | None:
    if value is None or value.tzinfo is UTC:
        return value
    if value.tzinfo is None:  # SQLite: stored in UTC, without a zone
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


JsonType = CheckedJson()
"""JSON everywhere; ``jsonb`` on PostgreSQL, where it can be indexed and queried."""


@event.listens_for(Column, "after_parent_attach")
def _name_checked_columns(column: Column[Any], parent: Any) -> None:
    # A column's checked type names the column in its messages: each column gets its own
    # copy (entities share the instances of BaseEntity.type_annotation_map).
    if isinstance(parent, Table) and isinstance(column.type, CheckedType):
        column.type = column.type.named(f"{parent.name}.{column.name}")
