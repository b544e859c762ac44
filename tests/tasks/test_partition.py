"""PostgreSQL: one worker cut off by a silent partition never stalls the others.

A small TCP relay stands between one worker and PostgreSQL. Blackholed, it stops
forwarding without closing or resetting anything, as a real partition behaves: the cut
worker's calls hang, its transaction (if it was in one) stays open on the server. The
other worker must go on at its healthy rate, the cut worker's tasks must run again
elsewhere once their heartbeats stop, and when the relay resumes the cut worker's stale
results must be rejected while it claims new work without a restart.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import BinaryIO

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import OperationalError

from aana.configs.db import DbSettings
from aana.exceptions.core import BaseException as AanaException
from aana.storage.models import Status, TaskEntity
from aana.storage.queue_sql import ClaimRequest
from aana.storage.session import get_session
from aana.tasks.manager import QueueManager
from tests.helpers import REPO_ROOT, environment, wait_until
from tests.relay import Relay

pytestmark = [
    pytest.mark.postgresql,
    pytest.mark.slow,
    pytest.mark.parametrize("db", ["postgresql"], indirect=True),
]

APP = "tests.tasks.queue_app:app"
HEARTBEAT_TIMEOUT = 3
TASKS = 2000  # enough to keep both workers busy through the partition


def start_worker(db: DbSettings, record_dir: Path, log: BinaryIO) -> subprocess.Popen[bytes]:
    command = [
        *(sys.executable, "-m", "aana.cli", "worker", APP),
        *("--processes", "1", "--concurrency", "2"),
        *("--heartbeat-timeout", str(HEARTBEAT_TIMEOUT), "--max-retries", "5"),
    ]
    return subprocess.Popen(
        command,
        cwd=REPO_ROOT,
        env=environment(db, AANA_TEST_RECORD=str(record_dir)),
        stdout=log,
        stderr=subprocess.STDOUT,
    )


def runs_by(record_dir: Path, pid: int) -> Counter[int]:
    path = record_dir / f"{pid}.txt"
    return Counter(int(n) for n in path.read_text().split()) if path.exists() else Counter()


def completed() -> int:
    with get_session() as session:
        return session.query(TaskEntity).filter_by(status=Status.COMPLETED).count()


def queue_state(record_dir: Path) -> str:
    """What a failed wait saw: tasks per status, server sessions, the workers' logs."""
    with get_session() as session:
        counts = session.execute(
            select(TaskEntity.status, func.count(), func.max(TaskEntity.num_retries)).group_by(
                TaskEntity.status
            )
        ).all()
        activity = session.execute(
            text(
                "SELECT pid, state, wait_event_type, wait_event, left(query, 80)"
                " FROM pg_stat_activity WHERE datname = current_database()"
            )
        ).all()
    logs = "\n".join(
        f"--- {path.name} (last 3000 characters)\n{path.read_text(errors='replace')[-3000:]}"
        for path in sorted(record_dir.glob("*.log"))
    )
    return f"tasks (status, count, most claims): {counts}\nsessions: {activity}\n{logs}"


def rate_of(record_dir: Path, pid: int, seconds: float) -> float:
    """Tasks per second the worker ``pid`` started over the next ``seconds``."""
    before = sum(runs_by(record_dir, pid).values())
    time.sleep(seconds)
    return (sum(runs_by(record_dir, pid).values()) - before) / seconds


def test_silent_partition__the_other_worker_goes_on_and_the_cut_one_rejoins(
    db: DbSettings, tmp_path: Path
):
    config = db.datastore_config
    relay = Relay((config["host"], config["port"]))  # type: ignore[typeddict-item]
    cut_db = db.model_copy(update={"datastore_config": {**config, "port": relay.port}})
    manager = QueueManager(db.get_engine())
    manager.defer("nap", [{"n": n, "seconds": 0.02} for n in range(TASKS)])
    cut_log, healthy_log = (tmp_path / "cut.log").open("wb"), (tmp_path / "healthy.log").open("wb")
    cut = start_worker(cut_db, tmp_path, cut_log)
    healthy = start_worker(db, tmp_path, healthy_log)
    try:
        wait_until(lambda: runs_by(tmp_path, cut.pid) and runs_by(tmp_path, healthy.pid))
        healthy_rate = rate_of(tmp_path, healthy.pid, 2.0)

        relay.blackhole()
        started_before_cut = set(runs_by(tmp_path, cut.pid))
        time.sleep(5.0)  # the partition has set in: whatever the cut worker held, it holds
        rate_while_cut = rate_of(tmp_path, healthy.pid, 2.0)
        assert rate_while_cut >= 0.5 * healthy_rate, (rate_while_cut, healthy_rate)

        # What the cut worker had claimed runs again elsewhere once its heartbeats stop.
        wait_until(lambda: completed() == TASKS, 120, describe=lambda: queue_state(tmp_path))
        cut_runs, healthy_runs = runs_by(tmp_path, cut.pid), runs_by(tmp_path, healthy.pid)
        rerun = {n for n in cut_runs if n in healthy_runs}
        assert rerun, "the cut worker held no task when it was cut"
        assert rerun <= started_before_cut | set(cut_runs)

        relay.resume()
        # Its stale results are rejected (fenced): every task keeps the healthy result.
        manager.defer("nap", [{"n": n, "seconds": 0.02} for n in range(TASKS, TASKS + 100)])
        wait_until(lambda: completed() == TASKS + 100, 120, describe=lambda: queue_state(tmp_path))
        wait_until(lambda: any(n >= TASKS for n in runs_by(tmp_path, cut.pid)), timeout=60)
        assert cut.poll() is None and healthy.poll() is None  # neither was restarted
    finally:
        relay.resume()
        for worker in (cut, healthy):
            worker.terminate()
        for worker in (cut, healthy):
            worker.wait(60)
        relay.close()
        cut_log.close()
        healthy_log.close()

    with get_session() as session:
        rows = session.execute(select(TaskEntity.data, TaskEntity.status, TaskEntity.result))
        stored = [(data["n"], status, result) for data, status, result in rows]
    assert len(stored) == TASKS + 100
    assert all(status is Status.COMPLETED and result == n for n, status, result in stored)
    log = (tmp_path / "cut.log").read_text()
    assert "not stored: the task was handed back or claimed again meanwhile" in log, log


def _lockable(task_ids: list[uuid.UUID]) -> bool:
    """Whether another session can lock these tasks' rows at once (none is held)."""
    with get_session() as session:
        try:
            session.execute(
                select(TaskEntity.id)
                .where(TaskEntity.id.in_(task_ids))
                .with_for_update(nowait=True)
            ).all()
        except OperationalError:
            return False
    return True


def _cut_once(db: DbSettings, operation: str, cut_after: int) -> bool:
    """Claim 3 tasks through a relay, then cut the write after ``cut_after`` chunks.

    Returns:
        False if the write needed fewer chunks (it finished); True once the rows it
        touched could be locked again.

    """
    config = db.datastore_config
    QueueManager(db.get_engine()).defer("nap", [{"n": n} for n in range(3)])
    relay = Relay((config["host"], config["port"]))  # type: ignore[typeddict-item]
    settings = db.model_copy(
        update={
            "datastore_config": {**config, "port": relay.port},
            "idle_in_transaction_timeout": 1,
        }
    )
    engine = settings.get_engine()
    cut = QueueManager(engine)
    request = ClaimRequest(3, 5, None, None)
    try:
        attempts = [job.attempt for job in cut.settle([], request)[1]]
        assert len(attempts) == 3

        def write() -> None:
            with contextlib.suppress(AanaException):  # the relay's close ends it
                if operation != "heartbeat":  # results, and the next claim if "settle"
                    outcomes = [(attempt, Status.COMPLETED, 1) for attempt in attempts]
                    cut.settle(outcomes, request if operation == "settle" else None)
                else:
                    cut.heartbeat(attempts)

        relay.blackhole_after(cut_after)
        writer = threading.Thread(target=write, daemon=True)
        writer.start()
        writer.join(3.0)
        if not writer.is_alive():
            return False
        task_ids = [attempt.task_id for attempt in attempts]
        wait_until(lambda: _lockable(task_ids), timeout=10, interval=0.2)
        return True
    finally:
        relay.close()
        engine.dispose()


# The least number of chunks each write is sent in: a transaction takes several; on
# PostgreSQL, results with the next claim are one statement by itself (one chunk).
WRITES = {"finish": 2, "settle": 1, "heartbeat": 2}


@pytest.mark.parametrize("operation", WRITES)
def test_a_worker_cut_at_any_point_of_a_write_holds_no_row_for_long(db: DbSettings, operation: str):
    """Cut the worker's conversation after each chunk it sends in turn.

    Wherever the cut falls, the server ends the worker's transaction within its
    ``idle_in_transaction_session_timeout``: no statement of the worker's is left run
    on the server but not yet followed by the end of its message sequence (a pipeline
    cut before its Sync holds its row locks with no timeout running at all).
    """
    cut_points = 0
    while _cut_once(db, operation, cut_points + 1):
        cut_points += 1
        assert cut_points < 40, "the write never finished"
    least = WRITES[operation]
    assert cut_points >= least, f"only {cut_points} cut point(s): the write is not being cut"
