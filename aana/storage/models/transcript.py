"""Transcripts produced by ASR models."""

from __future__ import annotations

import numbers
from typing import Any, ClassVar, Self

from sqlalchemy import CheckConstraint
from sqlalchemy.orm import Mapped, mapped_column, validates

from aana.core.models.asr import AsrSegments, AsrTranscription, AsrTranscriptionInfo
from aana.exceptions.db import InvalidValueException
from aana.storage.models.base import BaseEntity, TimeStampEntity


def check_confidence(value: float | None) -> float | None:
    """Return ``value`` if it is a probability (or None), else raise ``ValueError``."""
    if isinstance(value, numbers.Real) and not 0.0 <= value <= 1.0:
        raise InvalidValueException(
            f"language_confidence must be between 0 and 1, got {value!r}",
            "transcript.language_confidence",
        )
    return value


class TranscriptEntity(BaseEntity, TimeStampEntity):
    """A transcript of speech: full text, timed segments and detected language."""

    __tablename__ = "transcript"
    repr_fields: ClassVar[tuple[str, ...]] = ("model", "language")

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    model: Mapped[str] = mapped_column(comment="Name of the ASR model")
    transcript: Mapped[str] = mapped_column(default="", comment="Full text")
    segments: Mapped[list[Any]] = mapped_column(default=list, comment="Timed segments (JSON)")
    language: Mapped[str] = mapped_column(default="", comment="Detected language")
    language_confidence: Mapped[float | None] = mapped_column(
        comment="Confidence in the detected language, 0 to 1"
    )
    transcript_type: Mapped[str] = mapped_column(comment="Kind of transcript: the identity")

    __table_args__ = (
        CheckConstraint(
            "language_confidence >= 0 AND language_confidence <= 1",
            name="language_confidence_range",
        ),
    )
    __mapper_args__ = {
        "polymorphic_identity": "transcript",
        "polymorphic_on": "transcript_type",
    }

    @validates("language_confidence")
    def _check_language_confidence(self, _key: str, value: float | None) -> float | None:
        return check_confidence(value)

    @classmethod
    def from_asr_output(
        cls,
        model_name: str,
        info: AsrTranscriptionInfo,
        transcription: AsrTranscription,
        segments: AsrSegments,
    ) -> Self:
        """Build a transcript entity from the outputs of an ASR model."""
        return cls(
            model=model_name,
            transcript=transcription.text,
            segments=[segment.model_dump(mode="json") for segment in segments],
            language=info.language,
            language_confidence=info.language_confidence,
        )
