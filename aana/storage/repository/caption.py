"""Repository of frame captions."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import suppress
from typing import TypeVar

from sqlalchemy.orm import Session

from aana.core.models.captions import Caption
from aana.storage.bulk import bulk_insertable, insert_and_load
from aana.storage.models.caption import CaptionEntity, check_non_negative
from aana.storage.repository.base import BaseRepository

T = TypeVar("T", bound=CaptionEntity)


class CaptionRepository(BaseRepository[T]):
    """Captions; use it directly or subclass it for your own caption entities."""

    def __init__(self, session: Session, model_class: type[T] = CaptionEntity) -> None:  # type: ignore[assignment]
        """Bind the repository to a session and a caption entity class."""
        super().__init__(session, model_class)

    def save(self, model_name: str, caption: Caption, timestamp: float, frame_id: int) -> T:
        """Store one caption.

        Returns:
            The stored caption entity.

        """
        entity = self.model_class.from_caption_output(
            model_name=model_name, caption=caption, frame_id=frame_id, timestamp=timestamp
        )
        return self.create(entity)

    def save_all(
        self,
        model_name: str,
        captions: Sequence[Caption],
        timestamps: Sequence[float],
        frame_ids: Sequence[int],
    ) -> list[T]:
        """Store many captions of one model in a single bulk insert.

        Returns:
            The stored caption entities, in the order given.

        Raises:
            ValueError: The three lists differ in length, or a frame id or timestamp is
                negative; nothing is written.

        """
        if not len(captions) == len(timestamps) == len(frame_ids):
            raise ValueError(
                f"captions ({len(captions)}), timestamps ({len(timestamps)}) and frame_ids "
                f"({len(frame_ids)}) must have the same length: one of each per frame"
            )
        if frame_ids and timestamps:
            with suppress(TypeError):  # a value of the wrong type: its column type says so
                check_non_negative("frame_id", min(frame_ids))
                check_non_negative("timestamp", min(timestamps))
        with self.writing(f"saving {len(captions)} captions"):
            if bulk_insertable(self.model_class):
                columns = {"caption": captions, "timestamp": timestamps, "frame_id": frame_ids}
                same = {"model": model_name}
                entities = insert_and_load(self.session, self.model_class, columns, same)
            else:
                entities = [
                    self.model_class.from_caption_output(model_name, *values)
                    for values in zip(captions, frame_ids, timestamps, strict=True)
                ]
                self.session.add_all(entities)
            self._end_transaction()
        return entities
