import json

from aana.sdk import AanaSDK
from aana.storage.models import Status
from aana.storage.repository import TaskRepository
from aana.storage.session import get_session
from tests.helpers import BOTH_BACKENDS, aana, backdate


def test_tasks_cli__list_show_count_retry_purge(db):
    app = AanaSDK()
    failed = app.defer("transcribe", {"url": "a"}, user_id="alice")
    done = app.defer("caption", {"frame": 1}, user_id="bob")
    app.defer("caption", {"frame": 2})
    with get_session() as session:
        repository = TaskRepository(session)
        repository.update_status(failed, Status.FAILED, result={"error": "ValueError"})
        repository.update_status(done, Status.COMPLETED, result=["a cat"])

    listed = aana("tasks", "list", "--json", db=db)
    assert len(listed.stdout.splitlines()) == 3
    only = aana("tasks", "list", "--status", "failed", "--user", "alice", "--json", db=db)
    assert [json.loads(line)["id"] for line in only.stdout.splitlines()] == [failed]
    by_endpoint = aana("tasks", "list", "--endpoint", "caption", "--json", db=db)
    assert len(by_endpoint.stdout.splitlines()) == 2

    shown = json.loads(aana("tasks", "show", done, db=db).stdout)
    assert (shown["status"], shown["result"], shown["data"]) == (
        "completed",
        ["a cat"],
        {"frame": 1},
    )
    missing = aana("tasks", "show", "not-a-task", db=db, check=False)
    assert missing.returncode != 0 and "no task" in missing.stderr

    counts = dict(line.split() for line in aana("tasks", "count", db=db).stdout.splitlines())
    assert (counts["failed"], counts["completed"], counts["created"], counts["total"]) == (
        "1",
        "1",
        "1",
        "3",
    )

    refused = aana("tasks", "retry", done, db=db, check=False)
    assert refused.returncode != 0 and "only failed tasks" in refused.stderr
    aana("tasks", "retry", failed, db=db)
    assert app.get_task(failed).status == Status.CREATED

    # The completed task finished 30 s ago by the database's clock: older than 20 s only.
    with get_session() as session:
        backdate(session, [done], 30, columns=["completed_at"])
    assert "deleted 0" in aana("tasks", "purge", "--older-than", "1h", db=db).stdout
    assert "deleted 0" in aana("tasks", "purge", "--older-than", "1m", db=db).stdout
    assert "deleted 1" in aana("tasks", "purge", "--older-than", "20s", db=db).stdout
    assert aana("tasks", "purge", "--older-than", "soon", db=db, check=False).returncode != 0
    assert app.get_task(failed).status == Status.CREATED  # not finished: never purged
    with get_session() as session:
        assert TaskRepository(session).read(done, check=False) is None


@BOTH_BACKENDS
def test_worker__refuses_a_database_without_the_packages_migrations(empty_db):
    result = aana("worker", "tests.tasks.queue_app:app", "--burst", db=empty_db, check=False)
    assert result.returncode != 0
    assert "aana migrate tests.tasks.queue_app:app" in result.stderr
    assert "0003_notify_new_tasks" in result.stderr
    assert "Traceback" not in result.stderr


def test_worker__runs_on_a_migrated_database(db):
    app = AanaSDK()
    unknown = app.defer("unknown-endpoint", {})
    aana("worker", "tests.tasks.queue_app:app", "--burst", "--processes", "1", db=db)
    assert app.get_task(unknown).result["error"] == "UnknownEndpointError"
