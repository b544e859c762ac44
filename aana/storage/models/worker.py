"""Worker processes, as their heartbeats report them (*ours*)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index
from sqlalchemy.orm import Mapped, mapped_column

from aana.storage.dialects import utcnow
from aana.storage.models.base import BaseEntity


class WorkerEntity(BaseEntity):
    """One running worker process: written at each of its heartbeats, deleted when it stops.

    A row whose ``last_heartbeat`` is old belongs to a worker that died without stopping.
    """

    __tablename__ = "workers"

    id: Mapped[str] = mapped_column(primary_key=True, comment="host:pid:random, per process")
    hostname: Mapped[str] = mapped_column(comment="Host the worker runs on")
    pid: Mapped[int] = mapped_column(comment="Its process id on that host")
    concurrency: Mapped[int] = mapped_column(comment="Tasks it runs at once")
    running: Mapped[int] = mapped_column(default=0, comment="Tasks it held at its heartbeat")
    processed: Mapped[int] = mapped_column(default=0, comment="Tasks it finished so far")
    started_at: Mapped[datetime] = mapped_column(
        server_default=utcnow(), comment="First heartbeat (UTC)"
    )
    last_heartbeat: Mapped[datetime] = mapped_column(
        server_default=utcnow(), comment="Latest heartbeat (UTC)"
    )

    __table_args__ = (Index("ix_workers_last_heartbeat", "last_heartbeat"),)
