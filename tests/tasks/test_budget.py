"""The connection budget check that ``aana worker`` runs at start."""

import logging

import pytest

from aana.configs.db import DbSettings
from aana.tasks.budget import check_budget, connections_per_process
from tests.helpers import aana


def test_connections_per_process__pool_overflow_and_listener() -> None:
    db = DbSettings(pool_size=3, max_overflow=2)
    assert connections_per_process(db, listen=True) == 6
    assert connections_per_process(db, listen=False) == 5


def test_check_budget__sqlite_has_nothing_to_check(tmp_path) -> None:
    db = DbSettings(datastore_config={"path": str(tmp_path / "a.db")})
    assert check_budget(db, processes=1000, listen=True) is None


@pytest.mark.postgresql
@pytest.mark.parametrize("db", ["postgresql"], indirect=True)
def test_check_budget__a_fleet_too_large_for_max_connections_warns(
    db: DbSettings, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="aana.tasks.budget")
    small = check_budget(db, processes=1, listen=True)
    assert small is not None and small.fits and small.needed == 16
    assert not caplog.records
    huge = check_budget(db, processes=small.max_connections, listen=True)
    assert huge is not None and not huge.fits
    assert huge.needed == small.max_connections * 16
    [record] = caplog.records
    assert "lower --processes or pool_size/max_overflow" in record.getMessage()
    assert f"max_connections {small.max_connections}" in record.getMessage()


@pytest.mark.postgresql
@pytest.mark.parametrize("db", ["postgresql"], indirect=True)
def test_worker_command__warns_at_start_when_the_fleet_cannot_fit(db: DbSettings) -> None:
    big = db.model_copy(update={"pool_size": 400, "max_overflow": 0})
    result = aana("worker", "tests.tasks.queue_app:app", "--burst", "-p", "1", db=big, check=False)
    assert result.returncode == 0, result.stderr
    assert "this worker may open 401 connections" in result.stderr
