"""Bulk inserts that return entities without a unit-of-work flush per object."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy.orm import Session

from aana.storage.models.base import BaseEntity


def bulk_insert(session: Session, entities: Sequence[BaseEntity]) -> None:
    """Insert ``entities`` in bulk and make them persistent in ``session``."""
    session.add_all(entities)
    session.flush()


def bulk_insert_rows(
    session: Session, entity_class: type[BaseEntity], rows: Sequence[dict[str, Any]]
) -> list[Any]:
    """Insert ``rows`` (column values by attribute name) and return their entities."""
    entities = [entity_class(**row) for row in rows]
    bulk_insert(session, entities)
    return entities
