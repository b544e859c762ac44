import gc
import os
import pickle
import subprocess
import sys
import time
import weakref
from pathlib import Path

import pytest
from sqlalchemy import text

from aana.configs import DbSettings, DbType, Settings
from aana.configs.settings import load_settings
from aana.exceptions.config import ConfigurationError, MissingConfigKeyError
from aana.exceptions.db import DatabaseConnectionException
from aana.storage.engine import EngineSpec, create_engine
from tests.conftest import PG_SERVER
from tests.helpers import run_in_threads

PG_CONFIG = {**PG_SERVER, "password": "s3cret-pw", "database": "aana"}


def test_defaults__sqlite_in_var_lib():
    settings = DbSettings()
    assert settings.datastore_type == DbType.SQLITE
    assert settings.datastore_config == {"path": "/var/lib/aana_data"}
    assert (settings.pool_size, settings.max_overflow, settings.pool_recycle) == (5, 10, 3600)
    assert (settings.query_timeout, settings.connection_timeout) == (30, 10)


def test_get_engine__is_built_once_per_settings_object(tmp_path):
    settings = DbSettings(datastore_config={"path": str(tmp_path / "a.db")})
    assert settings.get_engine() is settings.get_engine()
    assert str(settings.get_engine().url) == f"sqlite:///{tmp_path / 'a.db'}"
    other = DbSettings(datastore_config={"path": str(tmp_path / "a.db")})
    assert other.get_engine() is not settings.get_engine()


def test_get_engine__postgresql_url_hides_the_password():
    settings = DbSettings(datastore_type="postgresql", datastore_config=PG_CONFIG)
    url = str(settings.get_engine().url)
    assert url == f"postgresql+psycopg://postgres:***@{PG_SERVER['host']}:{PG_SERVER['port']}/aana"
    assert "s3cret-pw" not in repr(settings)
    assert "s3cret-pw" not in str(settings)
    assert "s3cret-pw" not in repr(Settings(db_config=settings))


def test_get_engine__unknown_datastore_type_is_a_value_error():
    with pytest.raises(ValueError, match="'mysql' is not supported; use one of 'sqlite'"):
        DbSettings(datastore_type="mysql").get_engine()


def test_get_engine__missing_key_is_a_key_error_naming_it():
    config = {key: value for key, value in PG_CONFIG.items() if key != "database"}
    with pytest.raises(KeyError) as caught:
        DbSettings(datastore_type="postgresql", datastore_config=config).get_engine()
    assert isinstance(caught.value, MissingConfigKeyError)
    assert caught.value.key == "database"
    assert "missing the key 'database'" in str(caught.value)


def test_get_engine__wrong_type_names_the_setting():
    with pytest.raises(ConfigurationError, match=r"datastore_config\.port"):
        DbSettings(
            datastore_type="postgresql", datastore_config={**PG_CONFIG, "port": "five"}
        ).get_engine()


def test_get_engine__unwritable_sqlite_path(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(ConfigurationError, match=r"set datastore_config\.path to a writable"):
        DbSettings(datastore_config={"path": str(blocker / "sub" / "db.sqlite")}).get_engine()


def test_get_engine__sqlite_creates_the_folder_and_sets_pragmas(tmp_path):
    path = tmp_path / "deep" / "er" / "aana.db"
    settings = DbSettings(datastore_config={"path": str(path)}, connection_timeout=7)
    with settings.get_engine().connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar() == 7000
    assert path.exists()
    settings.get_engine().dispose()


@pytest.mark.postgresql
@pytest.mark.parametrize(("query_timeout", "expected"), [(30, "30s"), (0, "0")])
def test_get_engine__postgresql_statement_timeout(postgres_available, query_timeout, expected):
    if not postgres_available:
        pytest.skip("PostgreSQL is not reachable")
    settings = DbSettings(
        datastore_type="postgresql",
        datastore_config={**PG_SERVER, "database": "postgres"},
        query_timeout=query_timeout,
    )
    with settings.get_engine().connect() as connection:
        assert connection.execute(text("SHOW statement_timeout")).scalar() == expected
        assert connection.execute(text("SHOW TimeZone")).scalar() == "UTC"
    settings.get_engine().dispose()


def test_connect__refused_postgresql_names_host_and_port_not_password():
    settings = DbSettings(
        datastore_type="postgresql",
        datastore_config={**PG_CONFIG, "host": "127.0.0.1", "port": 1},
        connection_timeout=2,
    )
    started = time.monotonic()
    with pytest.raises(DatabaseConnectionException) as caught:
        settings.get_engine().connect()
    assert time.monotonic() - started < 2 + 1
    message = str(caught.value)
    assert "127.0.0.1:1" in message
    assert "s3cret-pw" not in message
    assert "s3cret-pw" not in repr(caught.value.__cause__)


def test_settings__db_config_from_environment(monkeypatch, tmp_path):
    monkeypatch.setenv(
        "DB_CONFIG",
        '{"datastore_type": "postgresql", "datastore_config": {"host": "db", "port": 5433,'
        ' "user": "u", "password": "p", "database": "d"}, "pool_size": 2}',
    )
    monkeypatch.setenv("TASK_QUEUE__MAX_RETRIES", "5")
    monkeypatch.chdir(tmp_path)
    settings = load_settings()
    assert settings.db_config.datastore_type == DbType.POSTGRESQL
    assert settings.db_config.datastore_config["port"] == 5433
    assert settings.db_config.pool_size == 2
    assert settings.task_queue.max_retries == 5
    assert settings.task_queue.num_workers == 4


def test_settings__dotenv_file_is_read(monkeypatch, tmp_path):
    monkeypatch.delenv("DB_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)
    Path(".env").write_text('DB_CONFIG={"datastore_config": {"path": "/tmp/from-dotenv.db"}}\n')
    assert load_settings().db_config.datastore_config == {"path": "/tmp/from-dotenv.db"}


def test_settings__malformed_db_config_json_names_the_variable(monkeypatch, tmp_path):
    monkeypatch.setenv("DB_CONFIG", '{"datastore_type": "sqlite",')
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigurationError, match="DB_CONFIG") as caught:
        load_settings()
    assert "db_config" in str(caught.value)


def test_settings__task_queue_defaults():
    queue = Settings().task_queue
    assert queue.model_dump() == {
        "enabled": True,
        "num_workers": 4,
        "execution_timeout": 600,
        "heartbeat_timeout": 60,
        "max_retries": 3,
        "maximum_active_tasks_per_user": 25,
        "retry_base_delay": 1.0,
        "retry_max_delay": 300.0,
        "retry_jitter": 0.5,
        "listen_url": None,
    }


def test_import__creates_no_engine_folder_or_connection(tmp_path):
    target = tmp_path / "never" / "aana.db"
    code = (
        "import aana, aana.configs, aana.storage.models, aana.storage.repository, "
        "aana.storage.session, aana.sdk, aana.cli\n"
        "import gc, sys, sqlalchemy\n"
        "assert not [o for o in gc.get_objects() if isinstance(o, sqlalchemy.Engine)]\n"
        "assert 'fastapi' not in sys.modules\n"
    )
    env = {**os.environ, "DB_CONFIG": f'{{"datastore_config": {{"path": "{target}"}}}}'}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, cwd=tmp_path)
    assert not target.parent.exists()


def run_python(code: str) -> None:
    subprocess.run([sys.executable, "-c", code], check=True)


def test_import__the_engine_module_does_not_import_the_configuration():
    run_python(
        "import sys, aana.storage.engine\n"
        "loaded = sorted(name for name in sys.modules if name.startswith('aana.configs'))\n"
        "assert not loaded, loaded\n"
    )


def test_import__the_configuration_loads_neither_storage_nor_sqlalchemy():
    run_python(
        "import sys, aana.configs\n"
        "loaded = sorted(name for name in sys.modules if name.startswith(('aana.storage', "
        "'sqlalchemy')))\n"
        "assert not loaded, loaded\n"
    )


def test_db_settings__equal_by_value_whether_or_not_an_engine_was_built(tmp_path):
    config = {"path": str(tmp_path / "a.db")}
    settings, same = DbSettings(datastore_config=config), DbSettings(datastore_config=config)
    engine = settings.get_engine()
    try:
        assert settings == same
        assert settings.model_copy() == settings
        assert pickle.loads(pickle.dumps(settings)) == settings
        assert settings != DbSettings(datastore_config=config, pool_size=1)
    finally:
        engine.dispose()


def test_get_engine__keeps_neither_the_settings_nor_their_engines_alive(tmp_path):
    settings = DbSettings(datastore_config={"path": str(tmp_path / "a.db")})
    settings_ref = weakref.ref(settings)
    engine_ref = weakref.ref(settings.get_engine())
    async_engine_ref = weakref.ref(settings.get_async_engine())
    del settings
    gc.collect()
    assert settings_ref() is None
    assert engine_ref() is None
    assert async_engine_ref() is None


def test_get_engine__sqlite_path_that_is_a_folder(tmp_path):
    with pytest.raises(ConfigurationError, match="is a folder") as caught:
        DbSettings(datastore_config={"path": str(tmp_path)}).get_engine()
    assert str(tmp_path / "aana.db") in str(caught.value)


@pytest.mark.parametrize(
    ("db_config", "named"),
    [
        ('{"datastore_type": "mysql"}', "'mysql' is not supported"),
        ('{"datastore_type": "postgresql", "datastore_config": {"host": "h"}}', "'port'"),
    ],
)
def test_settings__bad_db_config_fails_at_start(monkeypatch, tmp_path, db_config, named):
    monkeypatch.setenv("DB_CONFIG", db_config)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigurationError, match="DB_CONFIG") as caught:
        load_settings()
    assert named in str(caught.value)


def test_settings__numbers_out_of_range_are_refused():
    with pytest.raises(ValueError, match="pool_size"):
        DbSettings(pool_size=0)
    with pytest.raises(ValueError, match="query_timeout"):
        DbSettings(query_timeout=-1)


def test_db_settings__stray_environment_variables_are_ignored(monkeypatch):
    monkeypatch.setenv("DATASTORE_TYPE", "postgresql")
    monkeypatch.setenv("POOL_SIZE", "99")
    monkeypatch.setenv("DB_CONFIG__POOL_SIZE", "7")
    settings = DbSettings()
    assert settings.datastore_type == DbType.SQLITE
    assert settings.pool_size == 7


def test_get_engine__one_engine_for_concurrent_callers(tmp_path):
    import threading

    settings = DbSettings(datastore_config={"path": str(tmp_path / "a.db")})
    engines, barrier = [], threading.Barrier(8)

    def build() -> None:
        barrier.wait()
        engines.append(settings.get_engine())

    run_in_threads(*[build] * 8)
    assert len(engines) == 8
    assert len({id(engine) for engine in engines}) == 1
    settings.get_engine().dispose()


def test_model_copy__the_copy_builds_its_own_engine_from_its_own_settings(tmp_path):
    settings = DbSettings(datastore_config={"path": str(tmp_path / "a.db")})
    engine = settings.get_engine()
    copied = settings.model_copy(update={"pool_recycle": 0})
    try:
        assert copied.get_engine() is not engine
        assert copied.get_engine().pool._recycle == 0
        assert settings.model_copy(deep=True).get_engine() is not engine
    finally:
        engine.dispose()
        copied.get_engine().dispose()


def test_engine_spec__plain_data_that_builds_the_same_engine_and_hides_the_password(tmp_path):
    settings = DbSettings(
        datastore_type="postgresql", datastore_config=PG_CONFIG, pool_size=3, query_timeout=7
    )
    spec = EngineSpec.of(settings)
    assert "s3cret-pw" not in repr(spec)
    again = EngineSpec.from_json(spec.to_json())  # what a worker process is handed
    assert again == spec
    assert (again.datastore_type, again.pool_size, again.query_timeout) == ("postgresql", 3, 7)
    engine = create_engine(again)
    try:
        assert engine.url == settings.get_engine().url
        assert engine.pool.size() == 3  # type: ignore[attr-defined]
    finally:
        engine.dispose()
    sqlite = EngineSpec.of(DbSettings(datastore_config={"path": tmp_path / "a.db"}))
    assert EngineSpec.from_json(sqlite.to_json()).datastore_config == {
        "path": str(tmp_path / "a.db")
    }


def test_engine_spec__refuses_what_get_engine_refuses():
    with pytest.raises(ValueError, match="'mysql' is not supported"):
        EngineSpec.of(DbSettings(datastore_type="mysql"))
    config = {key: value for key, value in PG_CONFIG.items() if key != "database"}
    with pytest.raises(MissingConfigKeyError):
        EngineSpec.of(DbSettings(datastore_type="postgresql", datastore_config=config))
