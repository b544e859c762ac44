"""Repository of media entities."""

from __future__ import annotations

from typing import TypeVar

from sqlalchemy import Table
from sqlalchemy.orm import Session

from aana.core.models.media import MediaId
from aana.exceptions.db import MediaIdAlreadyExistsException
from aana.storage.dialects import Violation
from aana.storage.models.media import MediaEntity
from aana.storage.repository.base import BaseRepository

M = TypeVar("M", bound=MediaEntity)


class MediaRepository(BaseRepository[M]):
    """Media of any kind; reads return the most specific entity class stored."""

    def __init__(self, session: Session, model_class: type[M] = MediaEntity) -> None:  # type: ignore[assignment]
        """Bind the repository to a session and a media entity class."""
        super().__init__(session, model_class)

    def check_media_exists(self, media_id: MediaId) -> bool:
        """Whether a media item with this id exists."""
        return self.exists(media_id)

    def create(self, entity: M) -> M:
        """Insert a media entity and commit.

        The database's primary key decides, so of two writers racing on one id exactly
        one wins; the other's session is rolled back and stays usable.

        Raises:
            MediaIdAlreadyExistsException: A media item with this id already exists.

        """
        tables = type(entity).__mapper__.tables
        primary_keys = {table.primary_key.name for table in tables if isinstance(table, Table)}

        def duplicate_id(violation: Violation) -> MediaIdAlreadyExistsException | None:
            if violation.kind == "primary_key" or violation.constraint in primary_keys:
                return MediaIdAlreadyExistsException(self.table_name, entity.id)
            return None

        return self._insert(entity, f"creating {self.table_name} {entity.id!r}", duplicate_id)
