import asyncio
import logging
import threading
import time
from datetime import timedelta
from uuid import UUID

import pytest

from aana.sdk import AanaSDK
from aana.storage.models import Status
from aana.storage.queue_sql import Attempt
from aana.storage.repository import TaskRepository
from aana.storage.session import get_session
from aana.tasks import Worker, WorkerOptions
from aana.tasks.options import RetryPolicy
from tests.helpers import backdate, wait_until


def burst(app, **options):
    """Run a worker in this process until the queue is empty."""
    options = {"concurrency": 2, "burst": True, "poll_interval": 0.05, **options}
    worker = Worker(app, WorkerOptions(**options))
    worker.run()
    return worker


@pytest.fixture
def app(db):
    return AanaSDK(retryable_exceptions=[ConnectionError])


def test_worker__runs_plain_and_coroutine_handlers(app):
    @app.task()
    def double(data):
        return {"value": data["n"] * 2}

    async def triple(data, context):
        await asyncio.sleep(0)
        context.report_progress(0.5)
        return data["n"] * 3

    app.register_task("triple", triple)
    first = app.defer("double", {"n": 2})
    second = app.defer("triple", {"n": 2}, user_id="u")
    burst(app)
    done = app.get_task(first)
    assert (done.status, done.result, done.progress) == (Status.COMPLETED, {"value": 4}, 1.0)
    assert done.completed_at is not None and done.num_retries == 1
    assert app.get_task(second).result == 6


def test_worker__bad_input_fails_the_task_and_keeps_going(app):
    @app.task("boom")
    def boom(data):
        raise ValueError("bad value")

    @app.task("unserialisable")
    def unserialisable(data):
        return {"when": object()}

    @app.task("fine")
    def fine(data):
        return "ok"

    unknown = app.defer("nobody-home", {})
    raised = app.defer("boom", {})
    weird = app.defer("unserialisable", {})
    ok = app.defer("fine", {})
    burst(app)
    failed = app.get_task(unknown)
    assert failed.status == Status.FAILED
    assert failed.result["error"] == "UnknownEndpointError"
    assert "nobody-home" in failed.result["message"]
    raised_result = app.get_task(raised).result
    assert (raised_result["error"], raised_result["message"]) == ("ValueError", "bad value")
    assert 'raise ValueError("bad value")' in raised_result["traceback"]
    weird_result = app.get_task(weird).result
    assert weird_result["error"] == "ResultNotSerializableError"
    assert "JSON-serialisable" in weird_result["message"]
    assert app.get_task(ok).result == "ok"


def test_defer__data_not_json_is_rejected_nothing_written(app):
    with pytest.raises(TypeError, match="JSON-serialisable"):
        app.defer("ep", {"x": object()})
    with pytest.raises(TypeError, match=r"task data \[1\]"):
        app.defer_many("ep", [{"ok": 1}, {"x": float("nan")}])
    with get_session() as session:
        assert TaskRepository(session).count()["total"] == 0


def test_worker__retryable_errors_are_retried_up_to_max_retries(app):
    calls = []

    @app.task("flaky", retry=RetryPolicy(base=0, cap=0, jitter=0))
    def flaky(data):
        calls.append(1)
        raise ConnectionError("down")

    task_id = app.defer("flaky", {})
    burst(app, max_retries=3)
    task = app.get_task(task_id)
    assert (task.status, task.num_retries, len(calls)) == (Status.FAILED, 3, 3)
    assert task.result["error"] == "ConnectionError"


def start_worker(app, **options):
    options = {"concurrency": 2, "poll_interval": 0.05, **options}
    worker = Worker(app, WorkerOptions(**options))
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    return worker, thread


def status_of(app, task_id):
    return app.get_task(task_id).status


def start_on_a_held_task(app, endpoint, result, **options):
    """A worker running one task whose handler returns ``result`` once the gate is set."""
    gate, entered = threading.Event(), threading.Event()

    @app.task(endpoint)
    def held(data):
        entered.set()
        gate.wait(10)
        return result

    task_id = app.defer(endpoint, {})
    worker, thread = start_worker(app, concurrency=1, **options)
    assert entered.wait(10), "the handler did not start"
    assert status_of(app, task_id) == Status.RUNNING
    return gate, task_id, worker, thread


def test_fencing__stale_attempt_cannot_overwrite_the_newer_one(app):
    # The worker's own sweep would not find the task lost: only the test's sweep does.
    gate, task_id, worker, thread = start_on_a_held_task(
        app, "slow", "stale", heartbeat_timeout=3600, execution_timeout=3600
    )
    manager = app.task_queue()
    # The first attempt is declared lost (its last heartbeat two minutes ago) and re-claimed.
    with get_session() as session:
        backdate(session, [task_id], 120, columns=["updated_at"])
    assert manager.sweep(3600, heartbeat_timeout=60, max_retries=3) == [UUID(str(task_id))]
    [second] = manager.claim(10, 3, None, None)
    assert manager.start([second]) == [second] and second.attempt.number == 2
    assert manager.finish([(second.attempt, Status.COMPLETED, "new")]) == {second.id}
    gate.set()
    wait_until(lambda: worker.processed == 1)
    worker.stop()
    thread.join(10)
    task = app.get_task(task_id)
    assert (task.status, task.result, task.num_retries) == (Status.COMPLETED, "new", 2)


def test_fencing__retried_task_is_not_written_by_its_old_attempt(app):
    manager = app.task_queue()
    [task_id] = manager.defer("ep", [{}])
    [claimed] = manager.claim(1, 3, None, None)
    manager.start([claimed])
    # That attempt was claimed two minutes ago and has not been heard from since.
    with get_session() as session:
        backdate(session, [task_id], 120)
    old = worker_attempt(app, task_id)
    assert manager.sweep(3600, heartbeat_timeout=60, max_retries=1) == [old.task_id]
    assert app.get_task(task_id).status == Status.FAILED
    with get_session() as session:
        TaskRepository(session).retry_task(task_id)  # num_retries back to 0
    [new] = manager.claim(1, 3, None, None)
    # Only the claim's time tells the two attempts apart.
    assert new.attempt.number == old.number == 1
    assert new.attempt.assigned_at - old.assigned_at > timedelta(seconds=119)
    manager.start([new])
    assert manager.finish([(old, Status.COMPLETED, "stale")]) == set()
    assert manager.report_progress(old, 0.5) is False
    assert manager.release([old]) == set()
    assert manager.finish([(new.attempt, Status.COMPLETED, "new")]) == {task_id}
    assert app.get_task(task_id).result == "new"


def test_shutdown__running_tasks_finish_unstarted_stay_queued(app):
    gate, entered = threading.Event(), threading.Semaphore(0)

    @app.task("hold")
    def hold(data):
        entered.release()
        gate.wait(10)
        return data

    ids = app.defer_many("hold", [1, 2, 3, 4])
    worker, thread = start_worker(app, concurrency=2)
    # Handlers running, not only tasks marked RUNNING: a task a handler has not picked
    # up yet when the worker stops is handed back, not run.
    assert entered.acquire(timeout=10) and entered.acquire(timeout=10)
    worker.stop(grace=10)
    gate.set()  # the running two finish only once the worker was told to stop
    thread.join(10)
    statuses = sorted(status_of(app, i).value for i in ids)
    assert statuses == ["completed", "completed", "created", "created"]


def test_shutdown__grace_exceeded_hands_tasks_back_and_drops_late_results(app):
    gate, task_id, worker, thread = start_on_a_held_task(app, "stuck", "late")
    worker.stop(grace=0.1)
    thread.join(10)
    assert status_of(app, task_id) == Status.NOT_FINISHED
    late = app.task_queue().finish([(worker_attempt(app, task_id), Status.COMPLETED, "late")])
    gate.set()
    assert late == set()
    assert app.get_task(task_id).result is None


def worker_attempt(app, task_id):
    """The attempt that holds the task now, as its worker knows it."""
    task = app.get_task(task_id)
    return Attempt(task.id, task.num_retries, task.assigned_at)


def test_fairness__a_busy_user_waits_others_go_ahead(app):
    gate = threading.Event()

    @app.task("hold")
    def hold(data):
        gate.wait(10)

    heavy = app.defer_many("hold", range(6), user_id="heavy")
    light = app.defer_many("hold", range(2), user_id="light")
    worker, thread = start_worker(app, concurrency=8, maximum_active_tasks_per_user=2)
    wait_until(lambda: all(status_of(app, i) == Status.RUNNING for i in light))
    # A later claim, with slots free, passes over the heavy user's older tasks for it.
    late = app.defer("hold", {}, user_id="late")
    wait_until(lambda: status_of(app, late) == Status.RUNNING)
    assert sum(status_of(app, i) == Status.RUNNING for i in heavy) == 2
    gate.set()
    wait_until(lambda: all(status_of(app, i) == Status.COMPLETED for i in [*heavy, *light, late]))
    worker.stop()
    thread.join(10)


def test_worker__runs_with_a_pool_of_one_connection(app, db, monkeypatch, caplog):
    from aana.configs.settings import settings

    monkeypatch.setattr(
        settings,
        "db_config",
        db.model_copy(update={"pool_size": 1, "max_overflow": 0, "connection_timeout": 5}),
    )
    app = AanaSDK()

    @app.task()
    def echo(data, context):
        context.report_progress(0.5)
        return data

    ids = [app.defer("echo", {"n": n}) for n in range(20)]
    with caplog.at_level(logging.ERROR, logger="aana"):
        burst(app, concurrency=4)  # the listener's connection is not one of the pool's
    # A connection held while waiting for another would time the pool out: the worker
    # logs that and tries again, a handler's progress report fails its task.
    assert [record.getMessage() for record in caplog.records] == []
    assert {app.get_task(task_id).status for task_id in ids} == {Status.COMPLETED}
    settings.db_config.get_engine().dispose()


def held_handler(app):
    """Endpoint "hold": records its data, then waits for the gate (set it to go on)."""
    gate, calls = threading.Event(), []

    @app.task("hold")
    def hold(data):
        calls.append(data)
        gate.wait(10)
        return data

    return gate, calls


def running_and_created(app, ids):
    statuses = [status_of(app, i) for i in ids]
    return statuses.count(Status.RUNNING), statuses.count(Status.CREATED)


def test_prefetch__claims_ahead_of_the_threads_and_runs_each_task_once(app):
    gate, calls = held_handler(app)
    ids = app.defer_many("hold", list(range(5)))
    worker, thread = start_worker(app, concurrency=1, prefetch=2)
    # One handler thread busy, two more tasks claimed for it, the rest left to others.
    wait_until(lambda: running_and_created(app, ids) == (3, 2) and len(calls) == 1)
    gate.set()
    wait_until(lambda: all(status_of(app, i) == Status.COMPLETED for i in ids))
    worker.stop()
    thread.join(10)
    assert sorted(calls) == list(range(5))
    assert [app.get_task(i).num_retries for i in ids] == [1] * 5


def test_prefetch__heartbeats_keep_the_prefetched_tasks(app):
    gate, _ = held_handler(app)
    ids = app.defer_many("hold", [1, 2])
    # Heartbeats every 0.25 s; a task silent for 1 s would be swept by this very
    # worker. The prefetched task waits well under the 5 s after which it is handed back.
    worker, thread = start_worker(app, concurrency=1, prefetch=1, heartbeat_timeout=1)
    wait_until(lambda: running_and_created(app, ids) == (2, 0))
    before = [worker_attempt(app, i) for i in ids]
    time.sleep(2.2)  # more than twice the heartbeat timeout
    assert app.task_queue().sweep(3600, heartbeat_timeout=1, max_retries=3) == []
    assert [worker_attempt(app, i) for i in ids] == before, "an attempt was lost"
    gate.set()
    wait_until(lambda: all(status_of(app, i) == Status.COMPLETED for i in ids))
    worker.stop()
    thread.join(10)
    assert [app.get_task(i).num_retries for i in ids] == [1, 1]


def test_prefetch__shutdown_hands_back_the_unstarted_ones(app):
    gate, calls = held_handler(app)
    ids = app.defer_many("hold", [1, 2, 3])
    worker, thread = start_worker(app, concurrency=1, prefetch=2)
    wait_until(lambda: running_and_created(app, ids) == (3, 0) and len(calls) == 1)
    worker.stop(grace=10)
    gate.set()
    thread.join(10)
    [started] = calls
    expected = [Status.COMPLETED if n == started else Status.NOT_FINISHED for n in [1, 2, 3]]
    assert [status_of(app, i) for i in ids] == expected
    assert not thread.is_alive()
    # Never started: their claims are not counted.
    assert [app.get_task(i).num_retries for i in ids].count(0) == 2
    burst(app)  # the handed-back ones run on the next worker
    assert sorted(calls) == [1, 2, 3]
    assert all(status_of(app, i) == Status.COMPLETED for i in ids)
    assert [app.get_task(i).num_retries for i in ids] == [1, 1, 1]


def test_prefetch__a_task_waiting_too_long_goes_back_to_other_workers(app):
    gate, calls = threading.Event(), []

    @app.task("hold")
    def hold(data):
        calls.append(data)
        if len(calls) == 1:  # the first one holds its worker's only thread
            gate.wait(10)
        return data

    ids = app.defer_many("hold", [1, 2, 3])
    # A tenth of the execution timeout: prefetched tasks wait 1 s for a thread at most.
    worker, thread = start_worker(app, concurrency=1, prefetch=2, execution_timeout=10)
    wait_until(lambda: len(calls) == 1)
    [started] = calls
    waiting = [i for n, i in zip([1, 2, 3], ids, strict=True) if n != started]
    # Handed back unstarted, and not claimed again while the one thread is busy.
    wait_until(lambda: all(status_of(app, i) == Status.NOT_FINISHED for i in waiting))
    assert [app.get_task(i).num_retries for i in waiting] == [0, 0]
    burst(app, concurrency=2)  # another worker runs them meanwhile
    assert sorted(calls) == [1, 2, 3]
    gate.set()
    wait_until(lambda: all(status_of(app, i) == Status.COMPLETED for i in ids))
    worker.stop()
    thread.join(10)
    assert [app.get_task(i).num_retries for i in ids] == [1, 1, 1]


def test_prefetch__waiting_never_eats_the_execution_timeout(app):
    calls = []

    @app.task("nap")
    def nap(data):
        calls.append(data)
        time.sleep(0.4)
        return data

    ids = app.defer_many("nap", [1, 2, 3, 4])
    # Run one after the other, the last would end 1.6 s after its claim: past the 1.5 s
    # execution timeout, had its wait counted. It waits 0.15 s at most, then goes back.
    # The worker's sweep runs every 0.25 s.
    options = {"execution_timeout": 1.5, "heartbeat_timeout": 1}
    worker, thread = start_worker(app, concurrency=1, prefetch=3, **options)
    wait_until(lambda: all(status_of(app, i) == Status.COMPLETED for i in ids))
    worker.stop()
    thread.join(10)
    assert sorted(calls) == [1, 2, 3, 4]
    assert [app.get_task(i).num_retries for i in ids] == [1, 1, 1, 1]


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"prefetch": -1}, ValueError, "prefetch must be at least 0, got -1"),
        ({"concurrency": 0}, ValueError, "concurrency must be at least 1, got 0"),
        (
            {"prefetch": "2"},
            TypeError,
            r"prefetch must be a whole number of tasks \(an int\), got str",
        ),
        ({"concurrency": True}, TypeError, "concurrency must .* got bool"),
    ],
)
def test_worker_options__bad_counts_are_refused(options, error, message):
    with pytest.raises(error, match=message):
        WorkerOptions(**options)


def test_worker__a_lost_attempt_ending_late_leaves_the_new_one_held(app):
    first_gate, second_gate = threading.Event(), threading.Event()
    first_started, second_started = threading.Event(), threading.Event()

    @app.task("twice")
    def twice(data, context):
        if context.attempt == 1:
            first_started.set()
            first_gate.wait(10)
            return "old"
        second_started.set()
        second_gate.wait(10)
        return "new"

    task_id = app.defer("twice", {})
    options = {"heartbeat_timeout": 3600, "execution_timeout": 3600}
    worker, thread = start_worker(app, concurrency=2, **options)
    assert first_started.wait(10)
    # The first attempt is declared lost; the same worker claims the task again.
    with get_session() as session:
        backdate(session, [task_id], 120, columns=["updated_at"])
    manager = app.task_queue()
    assert manager.sweep(3600, heartbeat_timeout=60, max_retries=3) == [UUID(str(task_id))]
    assert second_started.wait(10)
    first_gate.set()  # the lost attempt ends: its result is refused
    wait_until(lambda: worker.processed == 1)
    # The second attempt is still the worker's: a stop hands it back.
    worker.stop(grace=0.1)
    thread.join(10)
    second_gate.set()
    task = app.get_task(task_id)
    assert (task.status, task.num_retries, task.result) == (Status.NOT_FINISHED, 2, None)
