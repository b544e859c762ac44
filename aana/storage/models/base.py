"""The declarative base of every entity, and the timestamp mixin."""

from __future__ import annotations

import datetime
import enum
import uuid
from typing import Any, ClassVar, Self

from sqlalchemy import Uuid, event, inspect
from sqlalchemy.orm import DeclarativeBase, Mapped, Mapper, mapped_column, validates

from aana.core.models.media import MediaId
from aana.storage import tables
from aana.storage.dialects import utcnow
from aana.storage.types import (
    CheckedFloat,
    CheckedInteger,
    CheckedString,
    JsonType,
    UtcDateTime,
)


def _short(value: Any) -> str:
    if isinstance(value, enum.Enum):
        value = value.value
    text = repr(str(value)) if isinstance(value, uuid.UUID) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


class BaseEntity(DeclarativeBase):
    """Base class of all entities; derive your own entities from it.

    Python types map to portable column types, which refuse values some backend could not
    store (``aana.storage.checks``): ``str`` to text, ``int`` to a 32-bit integer, ``float``
    to a double, ``datetime`` to a UTC timestamp, ``dict``,
    ``list`` and ``Any`` to JSON, ``uuid.UUID`` to a native UUID where there is one, ``MediaId``
    to a 36-character string, and enums to their values, stored as text (up to 64 characters),
    so adding a member needs no database type change.
    """

    metadata = tables.metadata
    type_annotation_map = {
        MediaId: CheckedString(36),
        str: CheckedString(),
        int: CheckedInteger(),
        float: CheckedFloat(),
        datetime.datetime: UtcDateTime(),
        dict[str, Any]: JsonType,
        list[Any]: JsonType,
        Any: JsonType,
        uuid.UUID: Uuid(),
        enum.Enum: tables.enum_type(enum.Enum),
    }

    repr_fields: ClassVar[tuple[str, ...]] = ()
    """Attributes ``repr`` shows after the primary key (*ours*); subclasses add theirs."""

    def __repr__(self) -> str:
        # Only what is loaded: a repr must not query the database, nor fail on an
        # expired or detached object.
        mapper = inspect(type(self))
        loaded = inspect(self).dict
        names = [mapper.get_property_by_column(column).key for column in mapper.primary_key]
        names += [name for name in self.repr_fields if name not in names]
        shown = [f"{name}={_short(loaded[name])}" for name in names if name in loaded]
        return f"{type(self).__name__}({', '.join(shown)})"

    @classmethod
    def from_parent(cls, parent_instance: BaseEntity, **kwargs: Any) -> Self:
        """Build an instance of this class from an instance of one of its parents.

        Every mapped column attribute of the parent is copied except the polymorphic
        discriminator, which the new class sets itself; ``kwargs`` add or override values.
        """
        parent_mapper = type(parent_instance).__mapper__
        discriminator = parent_mapper.polymorphic_on
        values = {
            attribute.key: getattr(parent_instance, attribute.key)
            for attribute in parent_mapper.column_attrs
            if discriminator is None
            or not any(column is discriminator for column in attribute.columns)
        }
        values.update(kwargs)
        return cls(**values)


class TimeStampEntity:
    """Mixin adding ``created_at`` and ``updated_at``, kept by the database clock.

    Both are timezone-aware UTC with at least millisecond resolution; ``updated_at``
    moves on every update. Values given explicitly are kept.
    """

    created_at: Mapped[datetime.datetime] = mapped_column(
        server_default=utcnow(), comment="When the row was created (UTC)"
    )
    updated_at: Mapped[datetime.datetime] = mapped_column(
        server_default=utcnow(), onupdate=utcnow(), comment="When the row last changed (UTC)"
    )

    @validates("created_at", "updated_at")
    def _check_aware(self, key: str, value: Any) -> Any:
        if isinstance(value, datetime.datetime) and value.tzinfo is None:
            raise ValueError(
                f"{key} {value.isoformat()} is a naive datetime; give it a time zone, "
                "e.g. datetime.now(timezone.utc)"
            )
        return value


@event.listens_for(TimeStampEntity, "before_update", propagate=True)
def _touch_updated_at(_mapper: Any, _connection: Any, target: TimeStampEntity) -> None:
    # A column's onupdate fires only when its own table is updated; with joined-table
    # inheritance a change to a subclass column must move the parent's updated_at too.
    if not inspect(target).attrs.updated_at.history.has_changes():
        target.updated_at = utcnow()


@event.listens_for(TimeStampEntity, "mapper_configured", propagate=True)
def _fetch_timestamps_on_flush(mapper: Mapper[Any], _class: type) -> None:
    # Read the clock columns back with RETURNING when a row is inserted or updated, so
    # an entity's timestamps stay readable once its session is closed. Set here rather
    # than in __mapper_args__, which every subclass replaces with its own.
    mapper.eager_defaults = True
