"""Media: the base table of videos, audio and images."""

from __future__ import annotations

from typing import ClassVar

from sqlalchemy.orm import Mapped, mapped_column, validates

from aana.core.models.media import MediaId, new_media_id, validate_media_id
from aana.storage.models.base import BaseEntity, TimeStampEntity


class MediaEntity(BaseEntity, TimeStampEntity):
    """A media item; the root of the joined-table media hierarchy.

    Subclasses add their own table whose ``id`` is a foreign key to their parent's.
    """

    __tablename__ = "media"
    repr_fields: ClassVar[tuple[str, ...]] = ("media_type",)

    id: Mapped[MediaId] = mapped_column(primary_key=True, default=new_media_id, comment="Media id")
    media_type: Mapped[str] = mapped_column(comment="Which kind of media: the entity's identity")

    __mapper_args__ = {
        "polymorphic_identity": "media",
        "polymorphic_on": "media_type",
    }

    @validates("id")
    def _check_id(self, _key: str, media_id: str) -> str:
        return validate_media_id(media_id)
