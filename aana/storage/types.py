"""Portable column types, defined once for every entity."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, DateTime, Dialect
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.types import TypeDecorator


class UtcDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC timestamp on every backend.

    PostgreSQL stores ``timestamptz``. SQLite stores fixed-width text
    (``YYYY-MM-DD HH:MM:SS.ffffff``, in UTC), which sorts and compares correctly as text
    and matches what ``aana.storage.dialects.utcnow`` renders. Naive datetimes are refused:
    their time zone would be a guess.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Check that a value is an aware datetime and convert it to UTC."""
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise TypeError(f"expected a datetime, got {type(value).__name__}: {value!r}")
        if value.tzinfo is None:
            raise ValueError(
                f"naive datetime {value.isoformat()} has no time zone; "
                "pass an aware one, e.g. datetime.now(timezone.utc)"
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
    return _as_utc(datetime.fromisoformat(value))


def _as_utc(value: datetime | None) -> datetime | None:
    if value is None or value.tzinfo is UTC:
        return value
    if value.tzinfo is None:  # SQLite: stored in UTC, without a zone
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


JsonType = JSON().with_variant(JSONB(), "postgresql")
"""JSON everywhere; ``jsonb`` on PostgreSQL, where it can be indexed and queried."""
