"""Pooler detection and the direct listen URL, without a pooler (see tests/distributed)."""

import pickle

import pytest
from pydantic import ValidationError

from aana.configs.db import DbSettings
from aana.configs.settings import TaskQueueSettings
from aana.exceptions.config import ConfigurationError, MigrationsThroughPoolerError
from aana.storage.pooling import behind_pooler, direct_conninfo
from aana.tasks.worker import WorkerOptions
from tests.helpers import aana


def test_behind_pooler__a_direct_connection_or_sqlite_is_not(db: DbSettings) -> None:
    engine = db.get_engine()
    assert not behind_pooler(engine)
    if db.datastore_type == "postgresql":
        with engine.connect() as connection:
            driver = connection.connection.driver_connection
            assert driver.prepare_threshold is not None  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("url", "conninfo"),
    [
        ("postgresql://aana@db:5432/aana", "postgresql://aana@db:5432/aana"),
        ("postgresql+psycopg://aana@db/aana", "postgresql://aana@db/aana"),
        ("postgres://db/aana", "postgres://db/aana"),
    ],
)
def test_direct_conninfo__postgresql_urls(url: str, conninfo: str) -> None:
    assert direct_conninfo(url) == conninfo


@pytest.mark.parametrize("url", ["sqlite:///x.db", "db:5432", "mysql://db/aana"])
def test_direct_conninfo__anything_else_is_refused_with_an_example(url: str) -> None:
    with pytest.raises(ConfigurationError, match="listen_url must be a PostgreSQL URL"):
        direct_conninfo(url)


def test_listen_url__checked_in_settings_and_worker_options() -> None:
    with pytest.raises(ValidationError, match="listen_url must be a PostgreSQL URL"):
        TaskQueueSettings(listen_url="redis://cache")
    with pytest.raises(ConfigurationError, match="listen_url must be a PostgreSQL URL"):
        WorkerOptions(listen_url="redis://cache")
    settings = TaskQueueSettings(listen_url="postgresql://aana@db/aana")
    assert WorkerOptions.from_settings(settings).listen_url == "postgresql://aana@db/aana"


def test_migrations_through_pooler_error__names_the_fix_and_pickles() -> None:
    error = MigrationsThroughPoolerError("PostgreSQL at bouncer:6432 (database 'aana')")
    assert "direct connection" in str(error)
    assert str(pickle.loads(pickle.dumps(error))) == str(error)


def test_worker_command__a_bad_listen_url_exits_2_before_touching_the_database(tmp_path) -> None:
    db = DbSettings(datastore_config={"path": str(tmp_path / "never.db")})
    result = aana(
        "worker", "tests.tasks.queue_app:app", "--listen-url", "redis://x", db=db, check=False
    )
    assert result.returncode == 2, result.stderr
    assert "listen_url must be a PostgreSQL URL" in result.stderr
    assert not (tmp_path / "never.db").exists()
