"""``aana tasks cancel`` and what ``aana tasks show`` says of due times and failures."""

import json

from aana.sdk import AanaSDK
from aana.storage.models import Status
from aana.storage.repository import TaskRepository
from aana.storage.session import get_session
from aana.tasks import Worker, WorkerOptions
from aana.tasks.options import RetryPolicy
from tests.helpers import aana


def test_tasks_cancel__by_id_and_by_selection(db):
    app = AanaSDK()
    # First in claim order by priority: SQLite's clock counts milliseconds, and tasks
    # deferred within one are taken in the order of their random ids.
    one = app.defer("transcribe", {}, user_id="alice", priority=1)
    two = app.defer("transcribe", {}, user_id="bob")
    three = app.defer("caption", {}, user_id="alice")
    four = app.defer("caption", {}, user_id="bob", schedule_in=3600)
    done = app.defer("caption", {})
    with get_session() as session:
        repository = TaskRepository(session)
        repository.update_status(done, Status.COMPLETED, result=1)
        running = repository.fetch_unprocessed_tasks(limit=1)[0]  # one
    assert str(running.id) == one

    result = aana("tasks", "cancel", one, two, db=db)
    assert "cancelled 1 task(s); asked 1 running task(s) to stop" in result.stdout
    assert app.get_task(one).cancel_requested and app.get_task(two).status == Status.CANCELLED

    bulk = aana("tasks", "cancel", "--endpoint", "caption", "--user", "bob", db=db)
    assert "cancelled 1 task(s)" in bulk.stdout
    assert app.get_task(four).status == Status.CANCELLED
    assert app.get_task(three).status == Status.CREATED

    refused = aana("tasks", "cancel", done, "not-a-task", three, db=db, check=False)
    assert refused.returncode == 1
    assert f"task {done} is already completed" in refused.stderr
    assert "no task with id not-a-task" in refused.stderr
    assert app.get_task(three).status == Status.CANCELLED  # the valid one still went

    usage = aana("tasks", "cancel", db=db, check=False)
    assert usage.returncode == 2 and "name the tasks" in usage.stderr
    both = aana("tasks", "cancel", one, "--user", "x", db=db, check=False)
    assert both.returncode == 2 and "not both" in both.stderr


def test_tasks_show__next_attempt_due_and_traceback(db):
    app = AanaSDK(retryable_exceptions=[ConnectionError])

    @app.task("flaky", retry=RetryPolicy(base=3600, cap=3600, jitter=0))
    def flaky(data):
        raise ConnectionError("the service is down")

    task_id = flaky.defer({})
    Worker(app, WorkerOptions(burst=True, poll_interval=0.05, max_retries=3)).run()
    shown = json.loads(aana("tasks", "show", task_id, db=db).stdout)
    assert shown["status"] == "failed" and shown["result"]["error"] == "ConnectionError"
    assert "(in 35" in shown["next_attempt_due"]  # an hour away: 3599.x seconds
    assert 'raise ConnectionError("the service is down")' in shown["result"]["traceback"]
    traceback = aana("tasks", "show", task_id, "--traceback", db=db).stdout
    assert traceback.startswith("Traceback") and "ConnectionError: the service is down" in traceback
    plain = app.defer("ep", {})
    assert "next_attempt_due" not in json.loads(aana("tasks", "show", plain, db=db).stdout)
    missing = aana("tasks", "show", plain, "--traceback", db=db, check=False)
    assert missing.returncode == 1 and "no stored traceback" in missing.stderr
