"""Worker processes, as deployed: exactly-once claims and crash recovery, per backend."""

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import func, select, text

from aana.sdk import AanaSDK
from aana.storage.models import Status, TaskEntity
from aana.storage.session import get_session

ROOT = Path(__file__).resolve().parents[2]
APP = "tests.tasks.queue_app:app"

pytestmark = pytest.mark.slow


def worker_environment(db, record_dir):
    config = {
        "datastore_type": str(db.datastore_type.value),
        **{"datastore_config": dict(db.datastore_config)},
    }
    return {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "DB_CONFIG": json.dumps(config),
        "AANA_TEST_RECORD": str(record_dir),
    }


def worker_process(db, record_dir, *args):
    command = [sys.executable, "-m", "aana.cli", "worker", APP, *args]
    return subprocess.Popen(
        command,
        cwd=ROOT,
        env=worker_environment(db, record_dir),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def runs(record_dir):
    counts = Counter()
    for path in Path(record_dir).glob("*.txt"):
        counts.update(int(line) for line in path.read_text().split())
    return counts


def statuses():
    with get_session() as session:
        query = select(TaskEntity.status, func.count()).group_by(TaskEntity.status)
        return {Status(status): number for status, number in session.execute(query)}


def wait_for(condition, timeout=60.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def test_exactly_once__four_processes_five_thousand_tasks(db, tmp_path):
    app = AanaSDK()
    app.defer_many("record", [{"n": n} for n in range(5000)])
    worker = worker_process(
        db, tmp_path, "--processes", "4", "--concurrency", "4", "--burst", "--poll-interval", "0.1"
    )
    output, _ = worker.communicate(timeout=240)
    assert worker.returncode == 0, output
    counts = runs(tmp_path)
    assert len(counts) == 5000, "some tasks never ran"
    assert max(counts.values()) == 1, f"ran twice: {[n for n, c in counts.items() if c > 1][:10]}"
    assert statuses() == {Status.COMPLETED: 5000}
    with get_session() as session:
        assert session.scalar(select(func.max(TaskEntity.num_retries))) == 1
    assert len(list(tmp_path.glob("*.txt"))) >= 2, "the processes did not share the work"


def test_crash__killed_workers_tasks_rerun_after_heartbeat_timeout(db, tmp_path):
    app = AanaSDK()
    ids = app.defer_many("nap", [{"n": n, "seconds": 0.3} for n in range(12)])
    options = [
        "-p",
        "1",
        "--concurrency",
        "3",
        "--heartbeat-timeout",
        "1",
        "--poll-interval",
        "0.1",
    ]
    victim = worker_process(db, tmp_path, *options)
    wait_for(lambda: statuses().get(Status.RUNNING, 0) >= 3)
    victim.kill()  # SIGKILL: no chance to hand anything back
    victim.communicate()
    lost = statuses().get(Status.RUNNING, 0)
    assert lost >= 1
    rescuer = worker_process(db, tmp_path, *options)
    try:
        wait_for(lambda: statuses() == {Status.COMPLETED: 12})
    finally:
        rescuer.send_signal(signal.SIGTERM)
        output, _ = rescuer.communicate(timeout=30)
    assert rescuer.returncode == 0, output
    retried = [app.get_task(task_id) for task_id in ids]
    assert sum(task.num_retries == 2 for task in retried) == lost
    assert all(task.result == n for n, task in enumerate(retried))
    assert sum(count == 2 for count in runs(tmp_path).values()) == lost


def test_crash__task_that_always_kills_its_worker_fails_after_max_retries(db, tmp_path):
    app = AanaSDK()
    task_id = app.defer("die", {"n": 0})
    options = [
        "-p",
        "1",
        "--heartbeat-timeout",
        "1",
        "--max-retries",
        "2",
        "--poll-interval",
        "0.1",
    ]
    for _ in range(4):
        worker = worker_process(db, tmp_path, *options)
        try:
            wait_for(
                lambda w=worker: (
                    w.poll() is not None or app.get_task(task_id).status == Status.FAILED
                ),
                timeout=20,
            )
        finally:
            if worker.poll() is None:
                worker.send_signal(signal.SIGTERM)
            worker.communicate(timeout=30)
        if app.get_task(task_id).status == Status.FAILED:
            break
    task = app.get_task(task_id)
    assert task.status == Status.FAILED
    assert task.result["error"] == "HeartbeatTimeoutError"
    assert task.num_retries == 2
    assert runs(tmp_path)[0] == 2
    assert statuses() == {Status.FAILED: 1}


def test_worker_processes__import_neither_the_command_line_nor_alembic(db, tmp_path):
    app = AanaSDK()
    ids = app.defer_many("modules", [{} for _ in range(8)])
    worker = worker_process(db, tmp_path, "--processes", "2", "--burst", "--poll-interval", "0.1")
    output, _ = worker.communicate(timeout=120)
    assert worker.returncode == 0, output
    results = [app.get_task(task_id).result for task_id in ids]
    expected = {"aana.cli": False, "aana.tasks.cli": False, "click": False, "alembic": False}
    assert results == [expected] * 8


def drop_tasks_table():
    with get_session() as session:
        session.execute(text("DROP TABLE tasks"))
        session.commit()


@pytest.mark.parametrize("processes", ["1", "2"])
def test_burst__database_failure_exits_non_zero_with_one_line(db, tmp_path, processes):
    drop_tasks_table()
    result = subprocess.run(
        [sys.executable, "-m", "aana.cli", "worker", APP, "--processes", processes, "--burst"],
        cwd=ROOT,
        env=worker_environment(db, tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if "claiming tasks failed" in line]
    assert len(errors) == int(processes), result.stderr
    assert "tasks" in errors[0]


def test_burst__empty_queue_exits_zero(db, tmp_path):
    worker = worker_process(db, tmp_path, "--processes", "1", "--burst")
    output, _ = worker.communicate(timeout=120)
    assert worker.returncode == 0, output
