"""Videos."""

from __future__ import annotations

from typing import ClassVar

from sqlalchemy import ForeignKey
from sqlalchemy.orm import Mapped, mapped_column

from aana.core.models.media import MediaId
from aana.storage.models.media import MediaEntity


class VideoEntity(MediaEntity):
    """A video: where it is and what it is called."""

    __tablename__ = "video"
    repr_fields: ClassVar[tuple[str, ...]] = ("media_type", "title", "path", "url")

    id: Mapped[MediaId] = mapped_column(
        ForeignKey("media.id", ondelete="CASCADE"), primary_key=True
    )
    path: Mapped[str | None] = mapped_column(comment="Local path of the video file")
    url: Mapped[str | None] = mapped_column(comment="URL of the video")
    title: Mapped[str | None] = mapped_column(comment="Title")
    description: Mapped[str | None] = mapped_column(comment="Description")

    __mapper_args__ = {"polymorphic_identity": "video"}
