"""The README's examples and the main job, run as a user runs them."""

import re
from pathlib import Path

from aana.configs.db import DbSettings
from tests.helpers import REPO_ROOT, aana, run


def sqlite_file(path: Path) -> DbSettings:
    return DbSettings(datastore_config={"path": str(path)})


def test_quickstart__main_job_runs_twice_on_sqlite(tmp_path):
    for _ in range(2):
        result = run(
            [str(REPO_ROOT / "examples" / "quickstart.py")],
            tmp_path,
            sqlite_file(tmp_path / "q.db"),
        )
        assert "'My Video'" in result.stdout
        assert "claimed=True" in result.stdout


def test_cli_migrate__creates_the_schema_then_is_a_no_op(tmp_path):
    for _ in range(2):
        result = aana("migrate", cwd=tmp_path, db=sqlite_file(tmp_path / "m.db"))
        assert "up to date" in result.stdout


README_BLOCKS = re.findall(r"```python\n(.*?)```", (REPO_ROOT / "README.md").read_text(), re.S)


def test_readme__has_python_examples():
    assert len(README_BLOCKS) >= 4


def test_readme__python_examples_run_in_order(tmp_path):
    for block in README_BLOCKS:
        result = run(["-c", block], tmp_path, sqlite_file(tmp_path / "readme.db"), check=False)
        assert result.returncode == 0, f"{block}\n---\n{result.stderr}"
