"""Packaging: optional PostgreSQL driver, metadata, license, version."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
import zipfile
from importlib.metadata import distribution, metadata, version
from pathlib import Path

import aana

WITHOUT_PSYCOPG = textwrap.dedent(
    """
    import sys
    sys.modules["psycopg"] = None  # as on a machine without the postgresql extra
    from aana.configs import DbSettings, Settings
    from aana.core.models import Video
    from aana.exceptions.config import ConfigurationError
    from aana.sdk import AanaSDK
    from aana.storage.repository import VideoRepository
    from sqlalchemy.orm import Session

    settings = Settings(db_config=DbSettings.from_url(sys.argv[1]))
    app = AanaSDK(settings=settings)
    app.migrate()
    with Session(settings.db_config.get_engine()) as session:
        VideoRepository(session).save(Video(url="https://example.com/v.mp4", media_id="v"))
    print("task", len(app.defer("echo", {"n": 1})))
    try:
        DbSettings.from_url("postgresql://u@h/d").get_engine()
    except ConfigurationError as error:
        print(error)
    """
)


def test_sqlite_only__works_without_psycopg(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-c", WITHOUT_PSYCOPG, f"sqlite:///{tmp_path}/a.db"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "task 36"
    assert "pip install 'aana-storage[postgresql]'" in lines[1]


def test_metadata__extras_license_classifiers_urls_version() -> None:
    meta = metadata("aana-storage")
    requirements = meta.get_all("Requires-Dist") or []
    psycopg = [line for line in requirements if line.startswith("psycopg")]
    assert psycopg and all('extra == "postgresql"' in line for line in psycopg)
    assert any(line.startswith("httpx") and 'extra == "test"' in line for line in requirements)
    for tool in ("ruff", "mypy"):
        assert not any(line.startswith(tool) and 'extra == "test"' in line for line in requirements)
        assert any(line.startswith(tool) and 'extra == "dev"' in line for line in requirements)
    assert meta.get("License-Expression") == "Apache-2.0"
    assert "LICENSE" in (meta.get_all("License-File") or [])
    assert any(str(file).endswith("LICENSE") for file in distribution("aana-storage").files or [])
    assert "Typing :: Typed" in (meta.get_all("Classifier") or [])
    assert meta.get_all("Project-URL")
    assert aana.__version__ == version("aana-storage")


HTTP_MODULES = ("fastapi", "starlette", "jinja2", "prometheus_client", "uvicorn")


def test_core_cli_and_worker__never_import_the_http_dependencies() -> None:
    """The api extra is optional: only ``aana.api`` (and metrics, when asked) load it."""
    code = (
        "import sys, aana, aana.sdk, aana.cli, aana.tasks.worker, aana.tasks.supervisor\n"
        "from aana.storage.session import get_session\n"
        f"print(sorted(m for m in {HTTP_MODULES!r} if m in sys.modules))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert result.stdout.strip() == "[]"


def test_wheel__ships_the_dashboard_templates_and_static_files(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parents[1]
    source = tmp_path / "source"  # a copy: building leaves build/ and *.egg-info behind
    shutil.copytree(root / "aana", source / "aana", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(root / name, source / name)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", str(tmp_path), str(source)],
        capture_output=True,
        check=True,
        timeout=300,
    )
    (wheel,) = tmp_path.glob("aana_storage-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    for name in (
        "aana/api/templates/base.html",
        "aana/api/templates/index.html",
        "aana/api/templates/panels.html",
        "aana/api/templates/task.html",
        "aana/api/static/dashboard.js",
        "aana/api/static/dashboard.css",
        "aana/py.typed",
    ):
        assert name in names
