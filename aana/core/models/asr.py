"""Outputs of automatic speech recognition (ASR) models."""

from typing import Annotated

from pydantic import BaseModel, Field

from aana.core.models.time import TimeInterval


class AsrWord(BaseModel):
    """A recognised word and when it was said."""

    word: str
    time_interval: TimeInterval
    alignment_confidence: float | None = Field(default=None, ge=0.0, le=1.0)


class AsrSegment(BaseModel):
    """A recognised stretch of speech."""

    text: str
    time_interval: TimeInterval
    confidence: float | None = Field(default=None, ge=0.0, le=1.0)
    no_speech_confidence: float | None = Field(default=None, ge=0.0, le=1.0)
    words: list[AsrWord] = Field(default_factory=list)
    speaker: str | None = None


AsrSegments = Annotated[list[AsrSegment], Field(description="Segments of a transcript.")]


class AsrTranscription(BaseModel):
    """The full text of a transcript."""

    text: str = ""


class AsrTranscriptionInfo(BaseModel):
    """The language a transcript is in, and how sure the model is of it."""

    language: str = ""
    language_confidence: float = Field(default=0.0, ge=0.0, le=1.0)
