"""``AanaSDK.from_path``: the application loader shared by the CLI and worker processes."""

import subprocess
import sys
from pathlib import Path

import pytest

from aana.exceptions.config import (
    AppAttributeNotFoundError,
    AppModuleNotFoundError,
    AppPathError,
    NotAnAppError,
)
from aana.sdk import AanaSDK

ROOT = Path(__file__).resolve().parents[1]


def test_from_path__returns_the_application():
    from tests.tasks.queue_app import app

    assert AanaSDK.from_path("tests.tasks.queue_app:app") is app


@pytest.mark.parametrize(
    ("app_path", "error", "expected"),
    [
        ("tests.tasks.queue_app", AppPathError, "is not of the form module:attribute"),
        (":app", AppPathError, "is not of the form module:attribute"),
        ("no_such_module_here:app", AppModuleNotFoundError, "cannot import module"),
        ("tests.tasks.queue_app:missing", AppAttributeNotFoundError, "no such attribute"),
        ("tests.tasks.queue_app:record", NotAnAppError, "is a TaskHandle"),
    ],
)
def test_from_path__bad_paths_raise_typed_errors(app_path, error, expected):
    with pytest.raises(error, match=expected) as raised:
        AanaSDK.from_path(app_path)
    assert isinstance(raised.value, AppPathError) and isinstance(raised.value, ValueError)


def test_imports__worker_side_needs_no_command_line_nor_alembic():
    code = (
        "import sys\n"
        "import aana.tasks.supervisor\n"
        "from aana.sdk import AanaSDK\n"
        "AanaSDK.from_path('tests.tasks.queue_app:app')\n"
        "print(sorted(m for m in ('aana.cli', 'aana.tasks.cli', 'click', 'alembic') "
        "if m in sys.modules))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


def test_imports__supervisor_needs_neither_sqlalchemy_nor_pydantic():
    code = (
        "import sys\n"
        "import aana.tasks.supervisor\n"
        "print(sorted(m for m in ('sqlalchemy', 'pydantic', 'click', 'alembic', 'psycopg') "
        "if m in sys.modules))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"
