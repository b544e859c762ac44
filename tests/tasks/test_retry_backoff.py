"""Retry back-off: retryable failures and lost tasks come back after their delay."""

from datetime import timedelta

import pytest
from sqlalchemy import select

from aana.exceptions.db import InvalidValueException
from aana.sdk import AanaSDK
from aana.storage.dialects import utcnow
from aana.storage.models import Status
from aana.storage.repository import TaskRepository
from aana.storage.session import get_session
from aana.tasks import Worker, WorkerOptions
from aana.tasks.options import RetryPolicy
from tests.helpers import backdate


def database_now():
    with get_session() as session:
        return session.scalar(select(utcnow()))


def burst(app, **options):
    Worker(app, WorkerOptions(**{"burst": True, "poll_interval": 0.05, **options})).run()


def test_retry_policy__doubles_up_to_the_cap_less_the_jitter():
    policy = RetryPolicy(base=2, cap=30, jitter=0.5)
    assert [policy.delay(n, draw=0.0) for n in (1, 2, 3, 4, 5)] == [2, 4, 8, 16, 30]
    assert policy.delay(3, draw=1.0) == 4.0
    assert 4.0 <= policy.delay(3) <= 8.0
    assert RetryPolicy(base=1, cap=10, jitter=0).delay(1000) == 10


@pytest.mark.parametrize(
    "values", [{"base": -1}, {"cap": float("inf")}, {"jitter": 1.5}, {"jitter": -0.1}]
)
def test_retry_policy__bad_values_raise_typed_errors(values):
    with pytest.raises(InvalidValueException, match="RetryPolicy"):
        RetryPolicy(**values)


def test_register__retry_must_be_a_policy(db):
    app = AanaSDK()
    with pytest.raises(TypeError, match="RetryPolicy"):
        app.register_task("x", print, retry={"base": 1})


def test_retryable_failure__is_due_again_after_its_back_off(db):
    app = AanaSDK(retryable_exceptions=[ConnectionError])
    calls = []

    @app.task("flaky", retry=RetryPolicy(base=120, cap=600, jitter=0))
    def flaky(data):
        calls.append(1)
        raise ConnectionError("down")

    @app.task("broken")
    def broken(data):
        raise ValueError("not retryable")

    task_id = flaky.defer({})
    other = broken.defer({})
    before = app.get_task(other).scheduled_at
    burst(app, max_retries=3)
    task = app.get_task(task_id)
    assert (task.status, len(calls)) == (Status.FAILED, 1)  # not claimed again at once
    assert timedelta(seconds=118) < task.scheduled_at - database_now() <= timedelta(seconds=120)
    assert app.get_task(other).scheduled_at == before  # not retried: due time unchanged
    with get_session() as session:
        backdate(session, [task_id], 1, columns=["scheduled_at"])
    burst(app, max_retries=3)
    task = app.get_task(task_id)
    assert (task.num_retries, len(calls)) == (2, 2)
    # The second failure waits twice as long.
    assert timedelta(seconds=238) < task.scheduled_at - database_now() <= timedelta(seconds=240)


def test_defaults__come_from_settings(db, monkeypatch):
    app = AanaSDK()
    monkeypatch.setattr(app.settings.task_queue, "retry_base_delay", 7)
    monkeypatch.setattr(app.settings.task_queue, "retry_max_delay", 70)
    monkeypatch.setattr(app.settings.task_queue, "retry_jitter", 0.25)
    assert app.retry_policy_for("anything") == RetryPolicy(7, 70, 0.25)


def test_lost_tasks__follow_their_endpoints_policy_computed_in_sql(db):
    app = AanaSDK()
    plain = app.defer("plain", {})
    special = app.defer("special", {})
    jittered = app.defer("jittered", {})
    with get_session() as session:
        repository = TaskRepository(session)
        assert len(repository.fetch_unprocessed_tasks()) == 3
        backdate(session, [plain, special, jittered], 120)
        expired = repository.update_expired_tasks(
            600,
            60,
            max_retries=5,
            retry_policy=RetryPolicy(base=100, cap=1000, jitter=0),
            endpoint_policies={
                "special": RetryPolicy(base=5000, cap=300, jitter=0),
                "jittered": RetryPolicy(base=100, cap=100, jitter=1),
            },
        )
    assert {task.status for task in expired} == {Status.NOT_FINISHED}
    now = database_now()
    due = {str(task.id): task.scheduled_at - now for task in expired}
    assert timedelta(seconds=98) < due[plain] <= timedelta(seconds=100)
    assert timedelta(seconds=298) < due[special] <= timedelta(seconds=300)  # the cap
    assert timedelta(seconds=-2) < due[jittered] <= timedelta(seconds=100)
    with get_session() as session:
        assert TaskRepository(session).fetch_unprocessed_tasks() == []  # none due yet


def test_worker_options__their_policy_replaces_the_settings_and_survives_json(db):
    # What the processes of ``aana worker --processes N`` are handed instead of settings.
    options = WorkerOptions.from_settings(AanaSDK().settings.task_queue, burst=True)
    assert options.retry == RetryPolicy(1.0, 300.0, 0.5)  # the settings' defaults
    options = WorkerOptions(burst=True, poll_interval=0.05, retry=RetryPolicy(120, 600, 0))
    assert WorkerOptions.from_json(options.to_json()) == options
    app = AanaSDK(retryable_exceptions=[ConnectionError])

    @app.task("flaky")
    def flaky(data):
        raise ConnectionError("down")

    task_id = flaky.defer({})
    Worker(app, options).run()
    task = app.get_task(task_id)
    assert task.status == Status.FAILED
    assert timedelta(seconds=118) < task.scheduled_at - database_now() <= timedelta(seconds=120)
