"""Through PgBouncer in transaction pooling mode: repositories, workers, migrations.

PgBouncer runs in front of the harness's private cluster. In transaction mode a client's
transactions land on any server session, so aana must detect the pooler and rely on no
session state: no prepared statements, no LISTEN (unless given a direct ``listen_url``),
no migration lock.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from aana.configs.db import DbSettings
from aana.core.models import Video
from aana.storage.models import Status
from aana.storage.pooling import behind_pooler
from aana.storage.repository import CaptionRepository, TaskRepository, VideoRepository
from aana.storage.session import get_session
from aana.tasks.listener import Listener
from aana.tasks.manager import QueueManager
from tests.distributed import harness
from tests.distributed.harness import Bouncer, Cluster, wait_for
from tests.helpers import REPO_ROOT, aana, environment

pytestmark = [pytest.mark.distributed]

POOLER_WARNING = "reached through a transaction pooler, where LISTEN does not work"


def direct_url(cluster: Cluster, database: str) -> str:
    return f"postgresql://postgres@127.0.0.1:{cluster.port}/{database}"


@pytest.fixture
def pooled(
    bouncer: Bouncer, cluster: Cluster, fleet_db: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[DbSettings]:
    """Settings of a fresh database through PgBouncer, installed as the process-wide ones."""
    from aana.configs.settings import settings as process_settings

    settings = cluster.settings(fleet_db, port=bouncer.port)
    monkeypatch.setattr(process_settings, "db_config", settings)
    try:
        yield settings
    finally:
        settings.get_engine().dispose()


def test_pooler_detection__through_pgbouncer_yes_direct_no(
    pooled: DbSettings, cluster: Cluster, fleet_db: str
) -> None:
    assert behind_pooler(pooled.get_engine())
    with pooled.get_engine().connect() as connection:
        assert connection.connection.driver_connection.prepare_threshold is None  # type: ignore[union-attr]
    direct = cluster.settings(fleet_db)
    try:
        assert not behind_pooler(direct.get_engine())
        with direct.get_engine().connect() as connection:
            assert connection.connection.driver_connection.prepare_threshold is not None  # type: ignore[union-attr]
    finally:
        direct.get_engine().dispose()


def test_repositories__work_through_pgbouncer(pooled: DbSettings) -> None:
    # Many times the same statements: psycopg would prepare them after 5 runs, and a
    # prepared statement does not follow a client to its next server session.
    with get_session() as session:
        videos = VideoRepository(session)
        for n in range(20):
            videos.save(Video(url=f"https://example.com/{n}.mp4", media_id=f"video-{n}"))
        assert all(videos.check_media_exists(f"video-{n}") for n in range(20))
        assert videos.get_metadata("video-7").title == ""
        captions = CaptionRepository(session)
        for _ in range(10):
            captions.save_all("model", ["a", "b"], [0.0, 1.0], [0, 1])
        tasks = TaskRepository(session)
        ids = [tasks.save("endpoint", {"n": n}).id for n in range(20)]
        claimed = []
        for _ in range(10):
            claimed += tasks.fetch_unprocessed_tasks(limit=2)
        for task in claimed:
            tasks.update_status(task.id, Status.COMPLETED, result={"ok": True})
        assert tasks.count()["completed"] == 20
        assert {task.id for task in claimed} == set(ids)


def test_migrate__through_pgbouncer_is_refused_with_the_fix(pooled: DbSettings) -> None:
    result = aana("migrate", db=pooled, check=False)
    assert result.returncode == 2, result.stderr
    assert "transaction pooler" in result.stderr
    assert "direct connection" in result.stderr


def test_listener__through_pgbouncer_without_listen_url_warns_once_and_stays_off(
    pooled: DbSettings, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="aana.tasks.listener")
    listener = Listener(pooled.get_engine(), threading.Event())
    listener.start()
    try:
        wait_for(lambda: POOLER_WARNING in caplog.text, 10, "the pooler warning")
        time.sleep(0.5)
        assert not listener.listening.is_set()
        assert caplog.text.count(POOLER_WARNING) == 1
    finally:
        listener.stop()


def test_listener__with_a_direct_listen_url_is_woken_by_defers_through_pgbouncer(
    pooled: DbSettings, cluster: Cluster, fleet_db: str
) -> None:
    wake = threading.Event()
    listener = Listener(pooled.get_engine(), wake, url=direct_url(cluster, fleet_db))
    listener.start()
    try:
        wait_for(listener.listening.is_set, 10, "listening")
        time.sleep(0.1)
        wake.clear()
        QueueManager(pooled.get_engine()).defer("record", [{"n": 0}])
        wait_for(wake.is_set, 10, "woken")
        assert listener.wakeups >= 1
    finally:
        listener.stop()


@pytest.mark.parametrize("listen", ["polling", "listen_url"])
def test_worker__drains_through_pgbouncer(
    pooled: DbSettings, cluster: Cluster, fleet_db: str, tmp_path: Path, listen: str
) -> None:
    extra = ["--listen-url", direct_url(cluster, fleet_db)] if listen == "listen_url" else []
    command = [
        *(sys.executable, "-m", "aana.cli", "worker", harness.APP),
        *("--processes", "2", "--concurrency", "2", "--poll-interval", "0.2", *extra),
    ]
    log_path = tmp_path / "worker.log"
    with log_path.open("wb") as log:
        worker = subprocess.Popen(
            command, cwd=REPO_ROOT, env=environment(pooled), stdout=log, stderr=subprocess.STDOUT
        )
        try:
            time.sleep(1.0)  # idle first: new tasks must be found by polling or notification
            QueueManager(pooled.get_engine()).defer("record", [{"n": n} for n in range(1000)])
            with get_session() as session:
                tasks = TaskRepository(session)
                wait_for(lambda: tasks.count()["completed"] == 1000, 120, "1000 tasks COMPLETED")
        finally:
            worker.terminate()
            worker.wait(60)
    output = log_path.read_text()
    assert worker.returncode == 0, output
    if listen == "polling":
        assert output.count(POOLER_WARNING) == 2, output  # once per process
    else:
        assert POOLER_WARNING not in output, output
