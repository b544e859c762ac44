"""Worker processes, as their heartbeats report them (*ours*)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Mapped

from aana.storage.models.base import BaseEntity
from aana.storage.tables import workers


class WorkerEntity(BaseEntity):
    """One running worker process: written at each of its heartbeats, deleted when it stops.

    A row whose ``last_heartbeat`` is old belongs to a worker that died without stopping.
    """

    __table__ = workers
    __tablename__ = workers.name

    id: Mapped[str]
    hostname: Mapped[str]
    pid: Mapped[int]
    concurrency: Mapped[int]
    running: Mapped[int]
    processed: Mapped[int]
    started_at: Mapped[datetime]
    last_heartbeat: Mapped[datetime]
