"""Media: the common base of videos, audio and images."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

from pydantic import Field, TypeAdapter, ValidationError

MediaId = Annotated[
    str,
    Field(
        min_length=1,
        max_length=36,
        pattern=r"^[A-Za-z0-9_-]+$",
        description="The media id: 1 to 36 letters, digits, '_' or '-'.",
    ),
]

_media_id = TypeAdapter(MediaId)


def validate_media_id(media_id: str) -> str:
    """Return ``media_id`` if it is a valid ``MediaId``, else raise ``ValueError``."""
    try:
        return _media_id.validate_python(media_id)
    except ValidationError:
        raise ValueError(
            f"invalid media id {media_id!r}: use 1 to 36 characters, each a letter, digit, "
            "'_' or '-' (a UUID fits)"
        ) from None


def new_media_id() -> str:
    """A fresh media id (a UUID4 string)."""
    return str(uuid.uuid4())


@dataclass
class Media:
    """A media item known by a local path, a URL or its content; nothing is downloaded.

    Attributes:
        path: A local file that must exist.
        url: Where the media can be fetched from.
        content: The media's bytes.
        media_id: Its id; a new UUID4 string by default.

    """

    path: Path | None = None
    url: str | None = None
    content: bytes | None = None
    media_id: MediaId = field(default_factory=new_media_id)

    def __post_init__(self) -> None:
        if self.path is None and self.url is None and self.content is None:
            raise ValueError("a media needs at least one of path, url or content")
        if self.path is not None:
            self.path = Path(self.path)
            if not self.path.exists():
                raise FileNotFoundError(f"media file {str(self.path)!r} does not exist")
        self.media_id = validate_media_id(self.media_id)
