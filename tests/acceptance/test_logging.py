"""Logging options and AANA_LOG_LEVEL/AANA_LOG_FORMAT, as an operator uses them."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from aana.configs.db import DbSettings
from tests.helpers import BOTH_BACKENDS, environment

QUEUE_APP = "tests.tasks.queue_app:app"
TEXT_LINE = re.compile(
    r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (INFO|DEBUG|WARNING) +[\w.]+ \[[\w-]+ \d+\] .+$"
)


def aana_with(db: DbSettings, *args: str, **variables: str) -> subprocess.CompletedProcess[str]:
    from tests.helpers import REPO_ROOT

    return subprocess.run(
        [sys.executable, "-m", "aana.cli", *args],
        cwd=REPO_ROOT,
        env=environment(db, **variables),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@BOTH_BACKENDS
def test_worker_logs__text_lines_carry_time_level_logger_process(empty_db: DbSettings) -> None:
    aana_with(empty_db, "migrate")
    result = aana_with(empty_db, "worker", QUEUE_APP, "--burst", "--processes", "1")
    assert result.returncode == 0, result.stderr
    lines = result.stderr.strip().splitlines()
    assert any("aana.tasks.worker" in line and "worker started" in line for line in lines)
    assert all(TEXT_LINE.match(line) for line in lines), lines
    assert "Context impl" not in result.stderr  # Alembic's chatter: only at DEBUG


def test_json_logs__from_the_environment_and_alembic_at_debug(
    empty_db: DbSettings, tmp_path: Path
) -> None:
    aana_with(empty_db, "migrate")
    result = aana_with(
        empty_db,
        "worker",
        QUEUE_APP,
        "--burst",
        "--processes",
        "2",
        AANA_LOG_LEVEL="debug",
        AANA_LOG_FORMAT="json",
    )
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in result.stderr.strip().splitlines()]
    assert {"time", "level", "logger", "process", "process_name", "message"} <= set(records[0])
    assert any(record["logger"].startswith("alembic") for record in records)
    started = [record for record in records if record["message"].startswith("worker started")]
    assert {record["process_name"] for record in started} == {"aana-worker-0", "aana-worker-1"}


def test_log_level_option__refuses_unknown_levels(empty_db: DbSettings) -> None:
    result = aana_with(empty_db, "--log-level", "LOUD", "current")
    assert result.returncode == 2
    assert "LOUD" in result.stderr


def test_importing_aana__configures_no_logging() -> None:
    code = (
        "import logging, aana, aana.sdk, aana.storage.repository, aana.tasks.worker, aana.cli; "
        "print(len(logging.getLogger().handlers), logging.getLogger().level)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "DB_CONFIG": "{"},
    )
    assert out.stdout.split() == ["0", str(30)]


pytestmark = pytest.mark.slow
