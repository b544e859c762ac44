"""Repository of the worker processes' rows (*ours*)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from aana.storage.dialects import utcnow
from aana.storage.models.worker import WorkerEntity
from aana.storage.repository.base import BaseRepository


class WorkerRepository(BaseRepository[WorkerEntity]):
    """Workers as their heartbeats report them; the workers write their own rows."""

    def __init__(self, session: Session) -> None:
        """Bind the repository to a session."""
        super().__init__(session, WorkerEntity)

    def seen_within(self, seconds: float) -> list[WorkerEntity]:
        """Workers whose last heartbeat is at most ``seconds`` old, by host and process."""
        query = (
            select(WorkerEntity)
            .where(WorkerEntity.last_heartbeat >= utcnow(-float(seconds)))
            .order_by(WorkerEntity.hostname, WorkerEntity.pid, WorkerEntity.id)
        )
        with self.reading("listing workers"):
            return list(self.session.scalars(query))
