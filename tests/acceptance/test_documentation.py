"""The README's examples and the main job, run as a user runs them."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run(args: list[str], db_path: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "DB_CONFIG": json.dumps({"datastore_config": {"path": str(db_path)}}),
        "PYTHONPATH": str(ROOT),
    }
    return subprocess.run(args, env=env, cwd=cwd, capture_output=True, text=True, timeout=120)


def test_quickstart__main_job_runs_twice_on_sqlite(tmp_path):
    for _ in range(2):
        result = run(
            [sys.executable, str(ROOT / "examples" / "quickstart.py")], tmp_path / "q.db", tmp_path
        )
        assert result.returncode == 0, result.stderr
        assert "'My Video'" in result.stdout
        assert "claimed=True" in result.stdout


def test_cli_migrate__creates_the_schema_then_is_a_no_op(tmp_path):
    for _ in range(2):
        result = run([sys.executable, "-m", "aana.cli", "migrate"], tmp_path / "m.db", tmp_path)
        assert result.returncode == 0, result.stderr
        assert "up to date" in result.stdout


README_BLOCKS = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)


def test_readme__has_python_examples():
    assert len(README_BLOCKS) >= 4


def test_readme__python_examples_run_in_order(tmp_path):
    for block in README_BLOCKS:
        result = run([sys.executable, "-c", block], tmp_path / "readme.db", tmp_path)
        assert result.returncode == 0, f"{block}\n---\n{result.stderr}"
