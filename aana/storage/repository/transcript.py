"""Repository of ASR transcripts."""

from __future__ import annotations

from typing import TypeVar

from sqlalchemy.orm import Session

from aana.core.models.asr import AsrSegments, AsrTranscription, AsrTranscriptionInfo
from aana.storage.models.transcript import TranscriptEntity
from aana.storage.repository.base import BaseRepository

T = TypeVar("T", bound=TranscriptEntity)


class TranscriptRepository(BaseRepository[T]):
    """Transcripts; use it directly or subclass it for your own transcript entities."""

    def __init__(self, session: Session, model_class: type[T] = TranscriptEntity) -> None:  # type: ignore[assignment]
        """Bind the repository to a session and a transcript entity class."""
        super().__init__(session, model_class)

    def save(
        self,
        model_name: str,
        transcription_info: AsrTranscriptionInfo,
        transcription: AsrTranscription,
        segments: AsrSegments,
    ) -> T:
        """Store the outputs of an ASR model as one transcript.

        Returns:
            The stored transcript entity.

        """
        entity = self.model_class.from_asr_output(
            model_name=model_name,
            info=transcription_info,
            transcription=transcription,
            segments=segments,
        )
        return self.create(entity)
