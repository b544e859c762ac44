import threading
import uuid
from collections import Counter
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from aana.exceptions.db import NotFoundException
from aana.storage.models import Status, TaskEntity
from aana.storage.repository import TaskRepository
from aana.storage.session import get_session
from tests.helpers import backdate, run_in_threads


def make_tasks(api, session, count, **kwargs):
    repository = api.TaskRepository(session)
    return [repository.save("ep", {"n": n}, **kwargs) for n in range(count)]


def age_in_order(api, session, tasks):
    """Make ``tasks`` created and due one minute apart, the first oldest (database clock)."""
    for minutes, task in enumerate(reversed(tasks), start=1):
        backdate(session, [task.id], 60 * minutes, columns=["created_at", "scheduled_at"])


def test_save__stores_a_created_task(api, session):
    task = api.TaskRepository(session).save("transcribe", {"url": "x"}, user_id="u1", priority=2)
    session.expunge_all()
    stored = api.TaskRepository(session).read(str(task.id))
    assert (stored.endpoint, stored.data, stored.user_id, stored.priority) == (
        "transcribe",
        {"url": "x"},
        "u1",
        2,
    )
    assert (stored.status, stored.num_retries, stored.progress) == (Status.CREATED, 0, 0.0)
    assert stored.result is None and stored.assigned_at is None


@pytest.mark.parametrize("data", [{"when": object()}, {"x": float("nan")}, {1, 2}])
def test_save__data_not_json__type_error_nothing_written(api, session, data):
    repository = api.TaskRepository(session)
    with pytest.raises(TypeError, match="task data must be JSON-serialisable"):
        repository.save("ep", data)
    assert repository.count()["total"] == 0


@pytest.mark.parametrize("bad_id", ["not-a-uuid", "", "1; DROP TABLE tasks"])
def test_read_delete__malformed_id_is_unknown_not_a_database_error(api, session, bad_id):
    repository = api.TaskRepository(session)
    assert repository.read(bad_id, check=False) is None
    with pytest.raises(NotFoundException):
        repository.read(bad_id)
    assert repository.delete(bad_id) is None
    with pytest.raises(NotFoundException):
        repository.delete(bad_id, check=True)
    with pytest.raises(NotFoundException):
        repository.update_status(bad_id, Status.RUNNING)


def test_read__accepts_str_and_uuid_and_delete(api, session):
    task = make_tasks(api, session, 1)[0]
    repository = api.TaskRepository(session)
    assert repository.read(task.id) is repository.read(str(task.id))
    assert repository.delete(str(task.id)).id == task.id
    assert repository.read(task.id, check=False) is None
    assert repository.delete(uuid.uuid4()) is None


def test_fetch__claims_by_priority_then_age_and_marks_assigned(api, session):
    repository = api.TaskRepository(session)
    low = repository.save("ep", {}, priority=0)
    high = repository.save("ep", {}, priority=5)
    low_newer = repository.save("ep", {}, priority=0)
    age_in_order(api, session, [low, high, low_newer])
    claimed = repository.fetch_unprocessed_tasks(limit=2)
    assert [task.id for task in claimed] == [high.id, low.id]
    for task in claimed:
        assert task.status == Status.ASSIGNED
        assert task.num_retries == 1
        assert task.assigned_at is not None
    assert [task.id for task in repository.fetch_unprocessed_tasks()] == [low_newer.id]
    assert repository.fetch_unprocessed_tasks() == []


def test_fetch__not_finished_is_claimed_again_failed_only_if_retryable(api, session):
    repository = api.TaskRepository(session)
    handed_back, retryable, fatal, exhausted = make_tasks(api, session, 4)
    repository.update_status(handed_back.id, Status.NOT_FINISHED)
    repository.update_status(retryable.id, Status.FAILED, result={"error": "ConnectionError"})
    repository.update_status(fatal.id, Status.FAILED, result={"error": "ValueError"})
    repository.update_status(exhausted.id, Status.ASSIGNED)
    repository.update_status(exhausted.id, Status.FAILED, result={"error": "ConnectionError"})
    claimed = repository.fetch_unprocessed_tasks(
        max_retries=1, retryable_exceptions=["ConnectionError"]
    )
    assert {task.id for task in claimed} == {handed_back.id, retryable.id}


def test_fetch__per_user_limit_counts_active_tasks(api, session):
    repository = api.TaskRepository(session)
    busy = make_tasks(api, session, 4, user_id="busy")
    make_tasks(api, session, 2, user_id="calm")
    anonymous = make_tasks(api, session, 2)
    repository.update_status(busy[0].id, Status.RUNNING)
    claimed = repository.fetch_unprocessed_tasks(maximum_active_tasks_per_user=2)
    per_user = Counter(task.user_id for task in claimed)
    assert per_user == {"busy": 1, "calm": 2, None: len(anonymous)}
    assert repository.fetch_unprocessed_tasks(maximum_active_tasks_per_user=2) == []


def test_update_status__stamps_clock_fields(api, session):
    repository = api.TaskRepository(session)
    task = make_tasks(api, session, 1)[0]
    assigned = repository.update_status(task.id, Status.ASSIGNED)
    assert assigned.assigned_at is not None and assigned.num_retries == 1
    running = repository.update_status(task.id, Status.RUNNING, progress=0.5)
    assert running.progress == 0.5 and running.completed_at is None
    backdate(session, [task.id], 60, columns=["created_at", "updated_at"])
    done = repository.update_status(str(task.id), Status.COMPLETED, progress=1, result={"ok": 1})
    assert done.completed_at is not None and done.result == {"ok": 1}
    assert done.updated_at - done.created_at > timedelta(seconds=59)  # moved to now
    with pytest.raises(NotFoundException):
        repository.update_status(uuid.uuid4(), Status.RUNNING)
    with pytest.raises(TypeError, match="task result"):
        repository.update_status(task.id, Status.COMPLETED, result={"x": object()})
    assert repository.read(task.id).result == {"ok": 1}


def test_update_status__without_commit_can_be_rolled_back(api, session):
    repository = api.TaskRepository(session)
    task_id = make_tasks(api, session, 1)[0].id  # a rollback expires the task's attributes
    repository.update_status(task_id, Status.RUNNING, commit=False)
    session.rollback()
    assert repository.read(task_id).status == Status.CREATED


def test_retry_task__back_to_created(api, session):
    repository = api.TaskRepository(session)
    task = make_tasks(api, session, 1)[0]
    repository.fetch_unprocessed_tasks()
    repository.update_status(task.id, Status.FAILED, result={"error": "X"})
    retried = repository.retry_task(str(task.id))
    assert (retried.status, retried.num_retries, retried.result, retried.completed_at) == (
        Status.CREATED,
        0,
        None,
        None,
    )
    with pytest.raises(NotFoundException):
        repository.retry_task(uuid.uuid4())


def test_active_and_incomplete_tasks(api, session):
    repository = api.TaskRepository(session)
    assigned, running, done, created, handed_back, failed = make_tasks(api, session, 6)
    repository.update_status(assigned.id, Status.ASSIGNED)
    repository.update_status(running.id, Status.RUNNING)
    repository.update_status(done.id, Status.COMPLETED)
    repository.update_status(handed_back.id, Status.NOT_FINISHED)
    repository.update_status(failed.id, Status.FAILED)
    assert {task.id for task in repository.get_active_tasks()} == {assigned.id, running.id}
    every = (assigned, running, done, created, handed_back, failed)
    ids = [str(t.id) for t in every] + ["junk", str(uuid.uuid4())]
    # As the original SDK: only CREATED, ASSIGNED and RUNNING (not NOT_FINISHED).
    assert set(repository.filter_incomplete_tasks(ids)) == {
        str(assigned.id),
        str(running.id),
        str(created.id),
    }


def test_update_expired_tasks__hand_back_or_fail(api, session):
    repository = api.TaskRepository(session)
    retry_left, out_of_retries, fresh = make_tasks(api, session, 3)
    repository.update_status(retry_left.id, Status.RUNNING)  # never counted as an attempt
    repository.update_status(out_of_retries.id, Status.ASSIGNED)  # attempt 1 of 1
    repository.update_status(fresh.id, Status.RUNNING)
    assert repository.update_expired_tasks(3600, heartbeat_timeout=60, max_retries=1) == []
    backdate(session, [retry_left.id, out_of_retries.id], 120, columns=["updated_at"])
    changed = repository.update_expired_tasks(
        execution_timeout=3600, heartbeat_timeout=60, max_retries=1
    )
    assert {task.id for task in changed} == {retry_left.id, out_of_retries.id}
    assert repository.read(retry_left.id).status == Status.NOT_FINISHED
    failed = repository.read(out_of_retries.id)
    assert failed.status == Status.FAILED and failed.completed_at is not None
    assert failed.result["error"] == "HeartbeatTimeoutError"
    assert repository.read(fresh.id).status == Status.RUNNING


def test_update_expired_tasks__execution_timeout_is_a_timeout_error(api, session):
    repository = api.TaskRepository(session)
    task = make_tasks(api, session, 1)[0]
    repository.update_status(task.id, Status.ASSIGNED)
    assert repository.update_expired_tasks(60, heartbeat_timeout=3600, max_retries=1) == []
    backdate(session, [task.id], 120, columns=["assigned_at"])
    repository.heartbeat([task.id])  # alive, but running for too long
    changed = repository.update_expired_tasks(
        execution_timeout=60, heartbeat_timeout=3600, max_retries=1
    )
    assert [t.result["error"] for t in changed] == ["TimeoutError"]


def test_heartbeat__keeps_a_task_alive(api, session):
    repository = api.TaskRepository(session)
    alive, silent = make_tasks(api, session, 2)
    for task in (alive, silent):
        repository.update_status(task.id, Status.RUNNING)
    backdate(session, [alive.id, silent.id], 120, columns=["updated_at"])
    before = repository.read(alive.id).updated_at
    repository.heartbeat([str(alive.id), "junk"])
    alive_id, silent_id = alive.id, silent.id  # expired next: asyncio cannot load on access
    session.expire_all()
    assert repository.read(alive_id).updated_at - before > timedelta(seconds=119)
    expired = repository.update_expired_tasks(3600, heartbeat_timeout=60, max_retries=3)
    assert [task.id for task in expired] == [silent_id]
    assert repository.read(alive_id).status == Status.RUNNING


def test_get_tasks_and_count(api, session):
    repository = api.TaskRepository(session)
    first = repository.save("ep", {}, user_id="a")
    second = repository.save("ep", {}, user_id="a")
    other = repository.save("ep", {}, user_id="b")
    age_in_order(api, session, [first, second, other])
    repository.update_status(second.id, Status.COMPLETED)
    assert [t.id for t in repository.get_tasks()] == [other.id, second.id, first.id]
    assert [t.id for t in repository.get_tasks(user_id="a")] == [second.id, first.id]
    assert [t.id for t in repository.get_tasks(status=Status.COMPLETED)] == [second.id]
    assert [t.id for t in repository.get_tasks(limit=1, offset=1)] == [second.id]
    counts = repository.count()
    assert counts["created"] == 2 and counts["completed"] == 1 and counts["total"] == 3
    assert counts["failed"] == 0
    assert repository.count(user_id="a")["total"] == 2


def test_fetch__concurrent_threads_never_share_a_task(db):
    with get_session() as session:
        repository = TaskRepository(session)
        for n in range(200):
            repository.save("ep", {"n": n})
    claims: list[uuid.UUID] = []
    lock = threading.Lock()

    def worker() -> None:
        with get_session() as session:
            repository = TaskRepository(session)
            while tasks := repository.fetch_unprocessed_tasks(limit=7):
                with lock:
                    claims.extend(task.id for task in tasks)

    run_in_threads(*[worker] * 4)
    assert len(claims) == 200
    assert len(set(claims)) == 200
    with get_session() as session:
        query = select(func.max(TaskEntity.num_retries))
        assert session.scalar(query) == 1


def test_retry_task__a_running_task_is_not_retried(api, session):
    repository = api.TaskRepository(session)
    task_id = make_tasks(api, session, 1)[0].id  # a failed write rolls back, expiring it
    repository.update_status(task_id, Status.RUNNING)
    with pytest.raises(ValueError, match="only a task that is not assigned or running"):
        repository.retry_task(task_id)
    assert repository.read(task_id).status == Status.RUNNING


def test_update_status__leaving_a_finished_state_clears_completed_at(api, session):
    repository = api.TaskRepository(session)
    task = make_tasks(api, session, 1)[0]
    assert repository.update_status(task.id, Status.FAILED).completed_at is not None
    assert repository.update_status(task.id, Status.NOT_FINISHED).completed_at is None


def test_exists__malformed_task_id_is_false(api, session):
    assert api.TaskRepository(session).exists("not-a-uuid") is False


def test_update_status__refreshes_the_sessions_own_object(api, session):
    repository = api.TaskRepository(session)
    task = make_tasks(api, session, 1)[0]
    task_id = task.id
    session.expire(task)
    updated = repository.update_status(task_id, Status.RUNNING, progress=0.25)
    assert updated is task and session.get(TaskEntity, task_id) is task
    assert (task.status, task.progress) == (Status.RUNNING, 0.25)
    assert not session.dirty and not session.in_transaction()


def test_update_status__pending_changes_are_committed_with_it(api, session, db):
    from aana.storage.models import VideoEntity

    repository = api.TaskRepository(session)
    task = make_tasks(api, session, 1)[0]
    session.add(VideoEntity(id="pending-video", title="t", description="d"))
    repository.update_status(task.id, Status.COMPLETED, result={"ok": True})
    with get_session() as other:
        assert other.get(VideoEntity, "pending-video") is not None
        assert other.get(TaskEntity, task.id).status == Status.COMPLETED


def test_fetch__returns_the_sessions_objects_fresh(api, session):
    repository = api.TaskRepository(session)
    tasks = make_tasks(api, session, 3)
    claimed = repository.fetch_unprocessed_tasks(limit=2)
    assert len(claimed) == 2 and all(task.status == Status.ASSIGNED for task in claimed)
    assert all(any(task is made for made in tasks) for task in claimed)


def test_update_status__returns_every_column_fresh_even_for_a_loaded_task(api, session):
    repository = api.TaskRepository(session)
    task = make_tasks(api, session, 1)[0]
    with get_session() as other:  # another process's write, unseen by this session
        TaskRepository(other).update_status(task.id, Status.RUNNING, 0.5, {"partial": 1})
    updated = repository.update_status(task.id, Status.COMPLETED)
    assert updated is task
    assert (task.status, task.progress, task.result) == (Status.COMPLETED, 0.5, {"partial": 1})


@pytest.mark.postgresql
@pytest.mark.parametrize("db", ["postgresql"], indirect=True)
def test_save__notifies_listening_workers(db):
    import psycopg

    from aana.storage.dialects import TASKS_CHANNEL

    config = db.datastore_config
    with psycopg.connect(
        host=config["host"],
        port=config["port"],
        user=config["user"],
        dbname=config["database"],
        autocommit=True,
    ) as listener:
        listener.execute(f"LISTEN {TASKS_CHANNEL}")
        with get_session() as session:
            TaskRepository(session).save("ep", {})  # the ORM's insert, not the queue's
        assert [n.channel for n in listener.notifies(timeout=5, stop_after=1)] == [TASKS_CHANNEL]
