"""Videos and their metadata."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel

from aana.core.models.media import Media


@dataclass
class Video(Media):
    """A video, with a title and a description."""

    title: str = ""
    description: str = ""


class VideoMetadata(BaseModel):
    """What is known about a video besides its content."""

    title: str
    description: str
    duration: float | None = None
