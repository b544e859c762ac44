"""Code written for the original SDK assigns settings fields: that takes effect."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from pydantic import ValidationError
from sqlalchemy import text

from aana.configs.db import DbSettings
from aana.configs.settings import Settings, TaskQueueSettings
from tests.helpers import run_in_threads


def test_assign_datastore_config__the_next_engine_uses_the_new_database(tmp_path: Path) -> None:
    settings = DbSettings(datastore_config={"path": str(tmp_path / "first.db")})
    first = settings.get_engine()
    assert settings.get_engine() is first

    settings.datastore_config = {"path": str(tmp_path / "second.db")}
    second = settings.get_engine()

    assert second is not first
    assert second.url.database == str(tmp_path / "second.db")
    assert settings.get_engine() is second  # cached again until the next change
    second.dispose()


def test_assign_pool_size__rebuilds_the_engine_with_it(tmp_path: Path) -> None:
    settings = Settings(db_config=DbSettings(datastore_config={"path": str(tmp_path / "a.db")}))
    first = settings.db_config.get_engine()
    settings.db_config.pool_size = 2
    rebuilt = settings.db_config.get_engine()
    assert rebuilt is not first
    assert rebuilt.pool.size() == 2  # type: ignore[attr-defined]
    rebuilt.dispose()


def test_assign_field__checked_like_the_constructor() -> None:
    settings = DbSettings()
    with pytest.raises(ValidationError, match="pool_size"):
        settings.pool_size = 0
    assert settings.pool_size == 5


def test_assign_field__while_threads_use_the_old_engine_they_finish(tmp_path: Path) -> None:
    settings = DbSettings(datastore_config={"path": str(tmp_path / "a.db")})
    old = settings.get_engine()
    connected, assigned = threading.Barrier(2), threading.Event()
    answers: list[int] = []

    def use_old_engine() -> None:
        with old.connect() as connection:
            connected.wait()
            assigned.wait(timeout=10)
            answers.append(connection.execute(text("SELECT 1")).scalar_one())

    def assign() -> None:
        connected.wait()
        settings.datastore_config = {"path": str(tmp_path / "b.db")}
        settings.get_engine()  # disposes the old engine while a connection is out
        assigned.set()

    run_in_threads(use_old_engine, assign)
    assert answers == [1]
    assert settings.get_engine().url.database == str(tmp_path / "b.db")
    settings.get_engine().dispose()


def test_maximum_active_tasks_per_user__zero_means_no_limit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from aana.tasks.worker import WorkerOptions

    monkeypatch.setenv("TASK_QUEUE__MAXIMUM_ACTIVE_TASKS_PER_USER", "0")
    loaded = Settings()
    assert loaded.task_queue.maximum_active_tasks_per_user == 0
    options = WorkerOptions.from_settings(loaded.task_queue)
    assert options.maximum_active_tasks_per_user is None
    with pytest.raises(ValidationError):
        TaskQueueSettings(maximum_active_tasks_per_user=-1)


def test_datastore_config_changed_in_place__the_next_engine_follows(tmp_path: Path) -> None:
    settings = DbSettings(datastore_config={"path": str(tmp_path / "first.db")})
    first = settings.get_engine()
    settings.datastore_config["path"] = str(tmp_path / "second.db")  # type: ignore[typeddict-item]
    assert settings.get_engine().url.database == str(tmp_path / "second.db")
    assert settings.get_engine() is not first
    settings.get_engine().dispose()
