"""De-duplication: one unfinished task per key, also across processes."""

import pytest
from sqlalchemy import func, select

from aana.exceptions.db import InvalidValueException
from aana.sdk import AanaSDK
from aana.storage.models import Status, TaskEntity
from aana.storage.models.task import DEDUPE_KEY_LENGTH
from aana.storage.repository import TaskRepository
from aana.storage.session import get_session
from tests.helpers import REPO_ROOT, race


@pytest.fixture
def app(db):
    return AanaSDK()


def count_tasks():
    with get_session() as session:
        return session.scalar(select(func.count()).select_from(TaskEntity))


def test_dedupe__same_key_returns_the_unfinished_task_until_it_ends(app):
    first = app.defer("ep", {"n": 1}, dedupe_key="video-42")
    assert app.defer("ep", {"n": 2}, dedupe_key="video-42") == first
    other = app.defer("ep", {"n": 3}, dedupe_key="video-43")
    assert other != first and count_tasks() == 2
    with get_session() as session:
        TaskRepository(session).update_status(first, Status.COMPLETED, result="done")
    again = app.defer("ep", {"n": 4}, dedupe_key="video-42")
    assert again != first and count_tasks() == 3
    app.cancel_task(again)
    assert app.defer("ep", {"n": 5}, dedupe_key="video-42") not in (first, again)


def test_dedupe__running_task_still_holds_its_key(app):
    first = app.defer("ep", {}, dedupe_key="k")
    with get_session() as session:
        TaskRepository(session).fetch_unprocessed_tasks()
    assert app.defer("ep", {}, dedupe_key="k") == first


@pytest.mark.parametrize(
    ("key", "message"),
    [("x" * (DEDUPE_KEY_LENGTH + 1), "at most 255"), ("", "must not be empty"), ("a\x00b", "NUL")],
)
def test_dedupe__unstorable_key_raises_and_writes_nothing(app, key, message):
    with pytest.raises(InvalidValueException, match=message):
        app.defer("ep", {}, dedupe_key=key)
    assert count_tasks() == 0


def test_dedupe__longest_key_is_stored(app):
    key = "é" * DEDUPE_KEY_LENGTH
    task_id = app.defer("ep", {}, dedupe_key=key)
    assert app.get_task(task_id).dedupe_key == key


def test_dedupe__four_processes_deferring_the_same_keys_store_one_task_each(db, tmp_path):
    racer = str(REPO_ROOT / "tests" / "tasks" / "dedupe_racer.py")
    results = race(db, tmp_path, racer)  # all four connected and waiting, then together
    assert all(result == results[0] for result in results)
    assert count_tasks() == 30
