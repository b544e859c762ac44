"""The ``aana`` command's errors, help and version, as a user meets them."""

from __future__ import annotations

import os
import subprocess
import sys

import click
import pytest

from aana.cli import main
from tests.helpers import REPO_ROOT

BROKEN_CONFIGS = ['{"datastore_type": "postgresql", "datastore_config": {']


def run_aana(
    *args: str, db_config: str | None, module: str = "aana.cli"
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m aana.cli args...`` with DB_CONFIG set to ``db_config`` (or unset)."""
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    env.pop("DB_CONFIG", None)
    if db_config is not None:
        env["DB_CONFIG"] = db_config
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def command_paths(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every command under ``group``, as the words that name it."""
    paths = []
    for name, command in group.commands.items():
        paths.append((*prefix, name))
        if isinstance(command, click.Group):
            paths.extend(command_paths(command, (*prefix, name)))
    return paths


@pytest.mark.parametrize("db_config", BROKEN_CONFIGS)
def test_help__every_command_whatever_db_config_holds(db_config: str) -> None:
    for path in [(), *command_paths(main)]:
        result = run_aana(*path, "--help", db_config=db_config)
        assert result.returncode == 0, (path, result.stderr)
        assert result.stdout.startswith("Usage: aana"), (path, result.stdout)
        assert result.stderr == ""


def test_version__and_python_m_aana() -> None:
    from importlib.metadata import version

    import aana

    result = run_aana("--version", db_config="{", module="aana")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"aana, version {version('aana-storage')}"
    assert aana.__version__ == version("aana-storage")


def test_bad_db_config__one_line_error_and_exit_2() -> None:
    result = run_aana("current", db_config='{"datastore_type": "oracle"}')
    assert result.returncode == 2
    assert result.stderr.startswith("Error: ")
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr
    assert "'oracle' is not supported" in result.stderr


@pytest.mark.parametrize(("option", "value"), [("--prefetch", "-1"), ("--concurrency", "0")])
def test_worker__bad_counts_are_usage_errors(option: str, value: str) -> None:
    result = run_aana("worker", "myapp:app", option, value, db_config=None)
    assert result.returncode == 2
    assert f"Invalid value for '{option}'" in result.stderr
    assert "Traceback" not in result.stderr


def test_server_down__one_line_error_exit_1_and_traceback_only_with_verbose() -> None:
    config = (
        '{"datastore_type": "postgresql", "datastore_config": {"host": "127.0.0.1", '
        '"port": 1, "user": "nobody", "password": "s3cret-pw", "database": "none"}}'
    )
    quiet = run_aana("tasks", "list", db_config=config)
    assert quiet.returncode == 1
    [line] = quiet.stderr.strip().splitlines()
    assert line.startswith("Error: Cannot connect to ")
    assert "s3cret-pw" not in quiet.stderr

    verbose = run_aana("--verbose", "tasks", "list", db_config=config)
    assert verbose.returncode == 1
    assert "Traceback (most recent call last)" in verbose.stderr
    assert verbose.stderr.strip().splitlines()[-1] == line
    assert "s3cret-pw" not in verbose.stderr
