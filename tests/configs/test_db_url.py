"""DB_CONFIG as a URL, an optional PostgreSQL password, examples matching the datastore."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text

from aana.configs import DbSettings, DbType
from aana.configs.settings import load_settings
from aana.exceptions.config import ConfigurationError
from tests.acceptance.test_cli_errors import run_aana
from tests.conftest import PG_SERVER

PG_URL = f"postgresql://{PG_SERVER['user']}@{PG_SERVER['host']}:{PG_SERVER['port']}/postgres"


def test_db_config_url__sqlite_with_nested_keys_merged(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("DB_CONFIG", f"sqlite:///{tmp_path}/a.db")
    monkeypatch.setenv("DB_CONFIG__POOL_SIZE", "3")
    db = load_settings().db_config
    assert db.datastore_type is DbType.SQLITE
    assert db.datastore_config == {"path": f"{tmp_path}/a.db"}
    assert db.pool_size == 3


def test_db_config_url__postgresql_parsed_by_make_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DB_CONFIG", "postgresql+psycopg://ann:p%40ss@db.example:6543/media")
    db = load_settings().db_config
    assert db.datastore_type is DbType.POSTGRESQL
    assert db.datastore_config == {
        "host": "db.example",
        "port": 6543,
        "user": "ann",
        "password": "p@ss",
        "database": "media",
    }
    assert "p@ss" not in repr(db)


def test_db_config_json__still_works(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DB_CONFIG", f'{{"datastore_config": {{"path": "{tmp_path}/j.db"}}}}')
    assert load_settings().db_config.datastore_config == {"path": f"{tmp_path}/j.db"}


@pytest.mark.postgresql
def test_postgresql_without_password__libpq_environment_applies(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PGPASSWORD", PG_SERVER["password"] or "unused-with-trust")
    for db in (
        DbSettings.from_url(PG_URL),
        DbSettings(
            datastore_type="postgresql",
            datastore_config={k: v for k, v in PG_SERVER.items() if k != "password"}
            | {"database": "postgres"},
        ),
    ):
        engine = db.get_engine()
        try:
            assert engine.url.password is None  # left to libpq: PGPASSWORD, .pgpass
            with engine.connect() as connection:
                assert connection.execute(text("SELECT 1")).scalar_one() == 1
        finally:
            engine.dispose()


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("mysql://a@b/c", "'mysql', which is not supported"),
        ("postgresql://db.example/media", "lacks the user"),
        ("postgresql://ann@db.example/media?sslmode=require", "query parameters (sslmode)"),
        ("sqlite://", "names no database file"),
    ],
)
def test_db_config_url__unusable_refused_with_a_working_example(url: str, expected: str) -> None:
    with pytest.raises(ConfigurationError) as raised:
        DbSettings.from_url(url)
    assert expected in str(raised.value)
    assert "://" in str(raised.value).split(expected)[1]  # an example URL follows


def test_configuration_error__example_matches_the_datastore_asked_for(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(
        "DB_CONFIG", '{"datastore_type": "postgresql", "datastore_config": {"host": "h"}}'
    )
    with pytest.raises(ConfigurationError) as raised:
        load_settings()
    message = str(raised.value)
    assert "missing the key 'port'" in message
    assert "postgresql://user@host:5432/database" in message
    assert "sqlite" not in message


@pytest.mark.postgresql
def test_cli__postgresql_url_without_password_and_its_errors() -> None:
    result = run_aana("current", db_config=PG_URL)
    assert result.returncode == 0, result.stderr
    broken = run_aana("current", db_config='{"datastore_type": "postgresql", "datastore_config": {')
    assert broken.returncode == 2
    [line] = broken.stderr.strip().splitlines()
    assert "postgresql://user@host:5432/database" in line and "sqlite" not in line
