"""No result or exception can wedge a worker: every attempt ends stored."""

import threading
import time

import pytest
from sqlalchemy import text

from aana.sdk import AanaSDK
from aana.storage.models import Status
from aana.storage.session import get_session
from aana.tasks import Worker, WorkerOptions
from aana.tasks.results import MAX_RESULT_BYTES, check_result, failure
from tests.helpers import nested


def wait_for(condition, timeout=30.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


class NulError(Exception):
    pass


def raise_nul(data):
    raise NulError("bad\x00byte and a lone \ud800 surrogate")


POISONS = {
    "nul_in_string": (lambda data: {"text": "a\x00b"}, "ResultNotStorableError", "NUL"),
    "nul_in_key": (lambda data: {"a\x00": 1}, "ResultNotStorableError", "NUL"),
    "lone_surrogate": (lambda data: ["\udc80"], "ResultNotStorableError", "lone surrogate"),
    "nul_in_exception": (raise_nul, "NulError", "bad\ufffdbyte and a lone \ufffd surrogate"),
    "deep_nesting": (lambda data: nested(100_000), "ResultNotStorableError", "too deeply"),
    "fifty_megabytes": (lambda data: "x" * 50_000_000, "ResultNotStorableError", "bytes of JSON"),
    "recursion_error": (lambda data: raise_recursion(), "RecursionError", "recursion"),
    "system_exit": (lambda data: exit_now(), "SystemExit", "3"),
}


def raise_recursion():
    return raise_recursion()


def exit_now():
    raise SystemExit(3)


@pytest.fixture
def app(db):
    return AanaSDK()


@pytest.mark.parametrize("poison", list(POISONS))
def test_poison__ends_failed_while_thirty_normal_tasks_complete(app, poison):
    handler, error, message = POISONS[poison]
    app.register_task("poison", handler)
    app.register_task("normal", lambda data: {"n": data["n"], "emoji": "\U0001f600 \\u0000"})
    normal = app.defer_many("normal", [{"n": n} for n in range(15)])
    poisoned = app.defer("poison", {})
    normal += app.defer_many("normal", [{"n": n} for n in range(15, 30)])
    worker = Worker(app, WorkerOptions(concurrency=2, burst=True, poll_interval=0.05))
    worker.run()
    result = app.get_task(poisoned).result
    assert app.get_task(poisoned).status == Status.FAILED
    assert result["error"] == error
    assert message in result["message"]
    for n, task_id in enumerate(normal):
        task = app.get_task(task_id)
        assert (task.status, task.result["n"]) == (Status.COMPLETED, n)
    assert app.get_task(normal[0]).result["emoji"] == "\U0001f600 \\u0000"
    assert worker.processed == 31


def test_poison__handler_threads_survive_many_poisons(app):
    app.register_task("poison", lambda data: nested(100_000) if data["n"] % 2 else raise_nul(data))
    app.register_task("normal", lambda data: data["n"])
    poisoned = app.defer_many("poison", [{"n": n} for n in range(10)])
    normal = app.defer_many("normal", [{"n": n} for n in range(10)])
    worker = Worker(app, WorkerOptions(concurrency=1, burst=True, poll_interval=0.05))
    worker.run()
    assert {app.get_task(t).status for t in poisoned} == {Status.FAILED}
    assert [app.get_task(t).result for t in normal] == list(range(10))


def test_poison__a_result_the_database_refuses_fails_alone(app, db):
    """The database itself refuses a result (a trigger here): the others are stored."""
    with get_session() as session:
        if db.datastore_type == "postgresql":
            session.execute(
                text(
                    "CREATE FUNCTION refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$ "
                    "BEGIN IF NEW.result ? 'poison' THEN RAISE EXCEPTION 'poison refused'; "
                    "END IF; RETURN NEW; END $$"
                )
            )
            session.execute(
                text(
                    "CREATE TRIGGER refuse_poison BEFORE UPDATE ON tasks FOR EACH ROW "
                    "EXECUTE FUNCTION refuse_poison()"
                )
            )
        else:
            session.execute(
                text(
                    "CREATE TRIGGER refuse_poison BEFORE UPDATE ON tasks "
                    "WHEN json_extract(NEW.result, '$.poison') IS NOT NULL "
                    "BEGIN SELECT RAISE(ABORT, 'poison refused'); END"
                )
            )
        session.commit()
    app.register_task("poison", lambda data: {"poison": True})
    app.register_task("normal", lambda data: data["n"])
    poisoned = app.defer("poison", {})
    normal = app.defer_many("normal", [{"n": n} for n in range(30)])
    worker = Worker(app, WorkerOptions(concurrency=4, burst=True, poll_interval=0.05))
    worker.run()
    refused = app.get_task(poisoned)
    assert refused.status == Status.FAILED
    assert refused.result["error"] == "ResultNotStorableError"
    assert "the database refused the result" in refused.result["message"]
    assert [app.get_task(t).result for t in normal] == list(range(30))


def test_poison__even_the_failure_refused_hands_the_task_back(app, db):
    """Nothing can end the task: left to the expiry sweep, the others go ahead."""
    with get_session() as session:
        if db.datastore_type == "postgresql":
            session.execute(
                text(
                    "CREATE FUNCTION refuse_end() RETURNS trigger LANGUAGE plpgsql AS $$ "
                    "BEGIN IF NEW.endpoint = 'cursed' AND NEW.status IN ('completed', 'failed') "
                    "THEN RAISE EXCEPTION 'cursed'; END IF; RETURN NEW; END $$"
                )
            )
            session.execute(
                text(
                    "CREATE TRIGGER refuse_end BEFORE UPDATE ON tasks FOR EACH ROW "
                    "EXECUTE FUNCTION refuse_end()"
                )
            )
        else:
            session.execute(
                text(
                    "CREATE TRIGGER refuse_end BEFORE UPDATE ON tasks "
                    "WHEN NEW.endpoint = 'cursed' AND NEW.status IN ('completed', 'failed') "
                    "BEGIN SELECT RAISE(ABORT, 'cursed'); END"
                )
            )
        session.commit()
    app.register_task("cursed", lambda data: "done")
    app.register_task("normal", lambda data: data["n"])
    cursed = app.defer("cursed", {})
    normal = app.defer_many("normal", [{"n": n} for n in range(10)])
    options = WorkerOptions(concurrency=1, poll_interval=0.05, heartbeat_timeout=1)
    worker = Worker(app, options)
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        wait_for(lambda: [app.get_task(t).result for t in normal] == list(range(10)))
        # Left to expire, handed back by the sweep, claimed and refused again.
        wait_for(lambda: app.get_task(cursed).num_retries >= 2)
    finally:
        worker.stop()
        thread.join(timeout=30)
    assert not thread.is_alive(), "the worker is stuck"
    assert app.get_task(cursed).status != Status.COMPLETED


def test_check_result__storable_values_pass_and_size_is_capped():
    check_result({"text": "\U0001f600 and \\u0000 as text", "n": [1, 2.5, None]}, "r")
    check_result("x" * (MAX_RESULT_BYTES - 2), "r")
    with pytest.raises(Exception, match="bytes of JSON"):
        check_result("x" * MAX_RESULT_BYTES, "r")


def test_failure__stores_a_bounded_sanitised_traceback():
    try:
        raise_nul({})
    except NulError as error:
        stored = failure(error)
    assert stored["error"] == "NulError"
    assert "\x00" not in stored["message"] and "\ufffd" in stored["message"]
    assert "raise_nul" in stored["traceback"] and "\x00" not in stored["traceback"]
    try:
        raise_recursion()
    except RecursionError as error:
        assert len(failure(error)["traceback"]) <= 20_100
