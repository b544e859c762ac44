"""Several processes migrating one empty database at once."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import inspect, text

from aana.configs.db import DbSettings
from tests.acceptance.conftest import APP_PATH, EXAMPLE
from tests.conftest import PACKAGE_HEAD
from tests.helpers import BOTH_BACKENDS, environment

MIGRATORS = 4


@pytest.mark.slow
@BOTH_BACKENDS
def test_migrate__four_processes_at_once_build_the_schema_once(
    empty_db: DbSettings, tmp_path: Path
) -> None:
    shutil.copytree(EXAMPLE, tmp_path / "extended_video")
    [app_head] = [
        path.name.split("_")[0]
        for path in (EXAMPLE / "migrations").glob("*.py")
        if path.name != "__init__.py"
    ]
    migrators = [
        subprocess.Popen(
            [sys.executable, "-m", "aana.cli", "migrate", APP_PATH],
            cwd=tmp_path,
            env=environment(empty_db),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(MIGRATORS)
    ]
    outputs = [migrator.communicate(timeout=120) for migrator in migrators]

    assert [migrator.returncode for migrator in migrators] == [0] * MIGRATORS, outputs
    with empty_db.get_engine().connect() as connection:
        versions = connection.scalars(text("SELECT version_num FROM alembic_version")).all()
    # The app's revision depends on a package revision; the package's newer ones are
    # a head of their own.
    assert sorted(versions) == sorted({app_head, PACKAGE_HEAD})
    assert set(inspect(empty_db.get_engine()).get_table_names()) == {
        "alembic_version",
        "caption",
        "extended_video",
        "media",
        "task_counts",
        "tasks",
        "transcript",
        "video",
        "workers",
    }
