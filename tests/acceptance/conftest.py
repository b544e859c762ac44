"""The example application, copied for the acceptance tests that run it as a subprocess."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.helpers import REPO_ROOT

EXAMPLE = REPO_ROOT / "examples" / "extended_video"
APP_PATH = "extended_video.app:aana_app"


@pytest.fixture
def app_root(tmp_path: Path) -> Path:
    """A folder holding a copy of the example application, without its migrations."""
    root = tmp_path / "project"
    shutil.copytree(
        EXAMPLE, root / "extended_video", ignore=shutil.ignore_patterns("migrations", "__pycache__")
    )
    return root
