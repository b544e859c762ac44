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


@pytest.mark.parametrize(
    ("code", "absent"),
    [
        # worker processes: the application, without the command line nor Alembic
        (
            "import aana.tasks.supervisor\n"
            "from aana.sdk import AanaSDK\n"
            "AanaSDK.from_path('tests.tasks.queue_app:app')\n",
            ("aana.cli", "aana.tasks.cli", "click", "alembic"),
        ),
        # the supervisor of aana worker --processes N: nothing but the standard library
        (
            "import aana.tasks.supervisor\n",
            ("sqlalchemy", "pydantic", "click", "alembic", "psycopg"),
        ),
    ],
    ids=["worker", "supervisor"],
)
def test_imports__stay_small(code, absent):
    check = f"import sys\n{code}print(sorted(m for m in {absent!r} if m in sys.modules))\n"
    result = subprocess.run(
        [sys.executable, "-c", check], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"
