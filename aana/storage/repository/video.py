"""Repository of videos."""

from __future__ import annotations

from typing import Any, TypeVar

from sqlalchemy.orm import Session

from aana.core.models.media import MediaId
from aana.core.models.video import Video, VideoMetadata
from aana.storage.models.video import VideoEntity
from aana.storage.repository.media import MediaRepository

V = TypeVar("V", bound=VideoEntity)


class VideoRepository(MediaRepository[V]):
    """Videos; use it directly or subclass it for your own video entities."""

    def __init__(self, session: Session, model_class: type[V] = VideoEntity) -> None:  # type: ignore[assignment]
        """Bind the repository to a session and a video entity class."""
        super().__init__(session, model_class)

    def save(self, video: Video) -> dict[str, Any]:
        """Store a video's id, path, URL, title and description; nothing is downloaded.

        Returns:
            ``{"media_id": ...}``.

        Raises:
            MediaIdAlreadyExistsException: A media item with this id already exists.

        """
        entity = self.model_class(
            id=video.media_id,
            path=str(video.path) if video.path is not None else None,
            url=video.url,
            title=video.title,
            description=video.description,
        )
        self.create(entity)
        return {"media_id": entity.id}

    def get_metadata(self, media_id: MediaId) -> VideoMetadata:
        """The title and description of a stored video.

        Raises:
            NotFoundException: No video has this id.

        """
        entity = self.read(media_id)
        return VideoMetadata(title=entity.title or "", description=entity.description or "")
