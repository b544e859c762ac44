"""Helpers to run the ``aana`` command line and the example application as subprocesses."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from aana.configs.db import DbSettings

REPO_ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = REPO_ROOT / "examples" / "extended_video"
APP_PATH = "extended_video.app:aana_app"


def environment(db: DbSettings) -> dict[str, str]:
    """The environment of a subprocess using ``db``, importing this checkout of aana."""
    python_path = os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": python_path, "DB_CONFIG": db.model_dump_json()}


def run(
    args: list[str], cwd: Path, db: DbSettings, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run ``python args...`` in ``cwd`` against ``db``; fail the test on an error if ``check``."""
    result = subprocess.run(
        [sys.executable, *args],
        cwd=cwd,
        env=environment(db),
        capture_output=True,
        text=True,
        timeout=120,
    )
    if check and result.returncode != 0:
        pytest.fail(f"{args} exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
    return result


def aana(
    *args: str, cwd: Path, db: DbSettings, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run the ``aana`` command line (``python -m aana.cli``)."""
    return run(["-m", "aana.cli", *args], cwd, db, check)


@pytest.fixture
def app_root(tmp_path: Path) -> Path:
    """A folder holding a copy of the example application, without its migrations."""
    root = tmp_path / "project"
    shutil.copytree(
        EXAMPLE, root / "extended_video", ignore=shutil.ignore_patterns("migrations", "__pycache__")
    )
    return root
