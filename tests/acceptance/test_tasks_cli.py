import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from aana.sdk import AanaSDK
from aana.storage.models import Status
from aana.storage.repository import TaskRepository
from aana.storage.session import get_session

ROOT = Path(__file__).resolve().parents[2]


def aana(db, *args):
    config = {
        "datastore_type": str(db.datastore_type.value),
        "datastore_config": dict(db.datastore_config),
    }
    env = {**os.environ, "PYTHONPATH": str(ROOT), "DB_CONFIG": json.dumps(config)}
    return subprocess.run(
        [sys.executable, "-m", "aana.cli", *args], cwd=ROOT, env=env, capture_output=True, text=True
    )


def test_tasks_cli__list_show_count_retry_purge(db):
    app = AanaSDK()
    failed = app.defer("transcribe", {"url": "a"}, user_id="alice")
    done = app.defer("caption", {"frame": 1}, user_id="bob")
    app.defer("caption", {"frame": 2})
    with get_session() as session:
        repository = TaskRepository(session)
        repository.update_status(failed, Status.FAILED, result={"error": "ValueError"})
        repository.update_status(done, Status.COMPLETED, result=["a cat"])

    listed = aana(db, "tasks", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    assert len(listed.stdout.splitlines()) == 3
    only = aana(db, "tasks", "list", "--status", "failed", "--user", "alice", "--json")
    assert [json.loads(line)["id"] for line in only.stdout.splitlines()] == [failed]
    by_endpoint = aana(db, "tasks", "list", "--endpoint", "caption", "--json")
    assert len(by_endpoint.stdout.splitlines()) == 2

    shown = json.loads(aana(db, "tasks", "show", done).stdout)
    assert (shown["status"], shown["result"], shown["data"]) == (
        "completed",
        ["a cat"],
        {"frame": 1},
    )
    missing = aana(db, "tasks", "show", "not-a-task")
    assert missing.returncode != 0 and "no task" in missing.stderr

    counts = dict(line.split() for line in aana(db, "tasks", "count").stdout.splitlines())
    assert (counts["failed"], counts["completed"], counts["created"], counts["total"]) == (
        "1",
        "1",
        "1",
        "3",
    )

    refused = aana(db, "tasks", "retry", done)
    assert refused.returncode != 0 and "only failed tasks" in refused.stderr
    assert aana(db, "tasks", "retry", failed).returncode == 0
    assert app.get_task(failed).status == Status.CREATED

    assert "deleted 0" in aana(db, "tasks", "purge", "--older-than", "1h").stdout
    time.sleep(1.1)
    assert "deleted 1" in aana(db, "tasks", "purge", "--older-than", "1s").stdout
    assert aana(db, "tasks", "purge", "--older-than", "soon").returncode != 0
    assert app.get_task(failed) is not None


@pytest.mark.parametrize("empty_db", ["sqlite", "postgresql"], indirect=True)
def test_worker__refuses_a_database_without_the_packages_migrations(empty_db):
    result = aana(empty_db, "worker", "tests.tasks.queue_app:app", "--burst")
    assert result.returncode != 0
    assert "aana migrate tests.tasks.queue_app:app" in result.stderr
    assert "0003_notify_new_tasks" in result.stderr
    assert "Traceback" not in result.stderr


def test_worker__runs_on_a_migrated_database(db):
    app = AanaSDK()
    app.defer("unknown-endpoint", {})
    result = aana(db, "worker", "tests.tasks.queue_app:app", "--burst", "--processes", "1")
    assert result.returncode == 0, result.stderr
