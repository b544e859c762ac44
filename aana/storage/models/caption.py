"""Captions of video frames."""

from __future__ import annotations

import numbers
from typing import ClassVar, Self

from sqlalchemy import CheckConstraint
from sqlalchemy.orm import Mapped, mapped_column, validates

from aana.core.models.captions import Caption
from aana.exceptions.db import InvalidValueException
from aana.storage.models.base import BaseEntity, TimeStampEntity


def check_non_negative(name: str, value: float) -> float:
    """Return ``value`` unless it is negative, then raise ``ValueError`` naming ``name``.

    Other problems (NaN, a value out of range, a wrong type) are the column type's to
    find (``aana.storage.checks``).
    """
    if isinstance(value, numbers.Real) and value < 0:
        raise InvalidValueException(f"{name} must be >= 0, got {value!r}", f"caption.{name}")
    return value


class CaptionEntity(BaseEntity, TimeStampEntity):
    """A caption of one video frame."""

    __tablename__ = "caption"
    repr_fields: ClassVar[tuple[str, ...]] = ("model", "frame_id", "timestamp")

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    model: Mapped[str] = mapped_column(comment="Name of the captioning model")
    frame_id: Mapped[int] = mapped_column(comment="Index of the frame in the video")
    caption: Mapped[str] = mapped_column(comment="The caption")
    timestamp: Mapped[float] = mapped_column(comment="Time of the frame, in seconds")
    caption_type: Mapped[str] = mapped_column(comment="Kind of caption: the identity")

    __table_args__ = (
        CheckConstraint("frame_id >= 0", name="frame_id_non_negative"),
        CheckConstraint("timestamp >= 0", name="timestamp_non_negative"),
    )
    __mapper_args__ = {
        "polymorphic_identity": "caption",
        "polymorphic_on": "caption_type",
    }

    @validates("frame_id", "timestamp")
    def _check_non_negative(self, key: str, value: float) -> float:
        return check_non_negative(key, value)

    @classmethod
    def from_caption_output(
        cls, model_name: str, caption: Caption, frame_id: int, timestamp: float
    ) -> Self:
        """Build a caption entity from the output of a captioning model."""
        return cls(model=model_name, caption=caption, frame_id=frame_id, timestamp=timestamp)
