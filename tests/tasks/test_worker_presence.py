"""A worker's own row in ``workers``: written at its heartbeats, removed when it stops."""

from __future__ import annotations

import threading
import time

from sqlalchemy import select, text

from aana.sdk import AanaSDK
from aana.storage.models import WorkerEntity
from aana.storage.repository import WorkerRepository
from aana.storage.session import get_session
from aana.tasks.worker import Worker, WorkerOptions
from tests.helpers import wait_until


def rows(worker_id: str) -> list[WorkerEntity]:
    with get_session() as session:
        return list(session.scalars(select(WorkerEntity).where(WorkerEntity.id == worker_id)))


def test_worker__reports_itself_while_running_and_leaves_when_stopped(db) -> None:
    app = AanaSDK(name="presence", migrations_path=None)
    started = threading.Event()

    @app.task("hold")
    def hold(data: dict[str, int]) -> None:
        started.set()
        time.sleep(data["seconds"])

    worker = Worker(app, WorkerOptions(concurrency=3, heartbeat_timeout=0.4, poll_interval=0.05))
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        wait_until(lambda: rows(worker.worker_id), timeout=10)
        (row,) = rows(worker.worker_id)
        assert (row.concurrency, row.running, row.processed) == (3, 0, 0)
        first_beat = row.last_heartbeat
        hold.defer({"seconds": 3})
        assert started.wait(10)
        # The next report (every 2 s at most) counts the task it holds.
        wait_until(lambda: rows(worker.worker_id)[0].running == 1, timeout=10)
        assert rows(worker.worker_id)[0].last_heartbeat > first_beat
        with get_session() as session:
            seen = WorkerRepository(session).seen_within(60)
        assert worker.worker_id in [seen_row.id for seen_row in seen]
    finally:
        worker.stop(grace=0)
        thread.join(timeout=15)
    assert not thread.is_alive()
    assert rows(worker.worker_id) == []


def test_worker__first_report_removes_rows_of_workers_long_silent(db) -> None:
    with get_session() as session:
        session.add_all(
            [
                WorkerEntity(id="dead:1:x", hostname="dead", pid=1, concurrency=1),
                WorkerEntity(id="quiet:2:y", hostname="quiet", pid=2, concurrency=1),
            ]
        )
        session.commit()
        session.execute(
            text("UPDATE workers SET last_heartbeat = :old WHERE id = 'dead:1:x'"),
            {"old": "2000-01-01 00:00:00.000000"},
        )
        session.commit()
    app = AanaSDK(name="presence", migrations_path=None)
    worker = Worker(app, WorkerOptions(burst=True, poll_interval=0.05))
    try:
        report_first_heartbeat(worker)
    finally:
        worker.manager.engine.dispose()  # the worker's own engine; run() would dispose it
    with get_session() as session:
        ids = set(session.scalars(select(WorkerEntity.id)))
    assert ids == {"quiet:2:y", worker.worker_id}


def report_first_heartbeat(worker: Worker) -> None:
    worker.manager.report_worker(
        {
            "worker_id": worker.worker_id,
            "worker_hostname": "h",
            "worker_pid": 3,
            "worker_concurrency": 1,
            "worker_running": 0,
            "worker_processed": 0,
        },
        first=True,
    )
