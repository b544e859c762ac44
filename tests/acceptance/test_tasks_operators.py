"""``aana tasks`` for operators: tables, --json, bulk retry, purge with confirmation."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
import uuid

from sqlalchemy.orm import Session

from aana.configs.db import DbSettings
from aana.sdk import AanaSDK
from aana.storage.models import CaptionEntity, Status, TaskEntity, VideoEntity
from aana.storage.repository import TaskRepository
from aana.storage.session import get_session
from tests.helpers import REPO_ROOT, aana, backdate, environment


def make_tasks(app: AanaSDK) -> dict[str, str]:
    ids = {
        "a1": app.defer("transcribe", {"n": 1}, user_id="alice"),
        "a2": app.defer("transcribe", {"n": 2}, user_id="alice"),
        "b1": app.defer("caption", {"n": 3}, user_id="bob"),
        "done": app.defer("caption", {"n": 4}, user_id="bob"),
        "new": app.defer("caption", {"n": 5}),
    }
    with get_session() as session:
        repository = TaskRepository(session)
        for name in ("a1", "a2", "b1"):
            repository.update_status(ids[name], Status.FAILED, result={"error": "E"})
        repository.update_status(ids["done"], Status.COMPLETED, result=[])
    return ids


def test_list_and_count__tables_with_a_header_and_aligned_columns(db: DbSettings) -> None:
    ids = make_tasks(AanaSDK())
    lines = aana("tasks", "list", db=db).stdout.splitlines()
    assert lines[0].split() == [
        "ID", "STATUS", "ENDPOINT", "USER", "PRIORITY", "PROGRESS", "TRIES", "CREATED"
    ]  # fmt: skip
    assert set(lines[1]) == {"-", " "}
    assert len(lines) == 2 + len(ids)
    status_at = lines[0].index("STATUS")
    assert {line[status_at:].split()[0] for line in lines[2:]} == {"failed", "completed", "created"}
    assert any("-" in line.split() for line in lines[2:])  # no user: shown as "-"

    counts = aana("tasks", "count", db=db).stdout.splitlines()
    assert counts[0].split() == ["STATUS", "COUNT"]
    table = dict(line.split() for line in counts[2:])
    assert (table["failed"], table["total"]) == ("3", "5")
    assert json.loads(aana("tasks", "count", "--json", db=db).stdout)["failed"] == 3
    shown = json.loads(aana("tasks", "show", ids["done"], "--json", db=db).stdout)
    assert shown["status"] == "completed"


def test_retry__bulk_selection_by_filters(db: DbSettings) -> None:
    app = AanaSDK()
    ids = make_tasks(app)
    result = aana("tasks", "retry", "--endpoint", "transcribe", "--user", "alice", "--json", db=db)
    assert sorted(json.loads(result.stdout)["retried"]) == sorted([ids["a1"], ids["a2"]])
    assert app.get_task(ids["b1"]).status == Status.FAILED
    everything = aana("tasks", "retry", "--status", "failed", db=db).stdout
    assert everything.splitlines()[-1] == "1 task(s) queued again"
    assert app.get_task(ids["done"]).status == Status.COMPLETED  # never a finished success


def test_retry__many_ids_all_or_nothing(db: DbSettings) -> None:
    app = AanaSDK()
    ids = make_tasks(app)
    refused = aana("tasks", "retry", ids["a1"], ids["done"], db=db, check=False)
    assert refused.returncode == 1
    [line] = refused.stderr.strip().splitlines()
    assert "only failed tasks are retried" in line and f"{ids['done']} is completed" in line
    assert app.get_task(ids["a1"]).status == Status.FAILED  # nothing was retried
    aana("tasks", "retry", ids["a1"], ids["b1"], db=db)
    assert {app.get_task(ids[n]).status for n in ("a1", "b1")} == {Status.CREATED}


def test_retry__needs_a_selection(db: DbSettings) -> None:
    bare = aana("tasks", "retry", db=db, check=False)
    assert bare.returncode == 2 and "select tasks" in bare.stderr
    mixed = aana("tasks", "retry", str(uuid.uuid4()), "--user", "x", db=db, check=False)
    assert mixed.returncode == 2 and "not both" in mixed.stderr


def test_purge__dry_run_json_and_chunks(db: DbSettings) -> None:
    app = AanaSDK()
    finished = [app.defer("e", {"n": n}) for n in range(5)]
    with get_session() as session:
        for task_id in finished:
            TaskRepository(session).update_status(task_id, Status.COMPLETED)
        backdate(session, finished, 3600, columns=["completed_at"])
    dry = aana("tasks", "purge", "--older-than", "10m", "--dry-run", db=db).stdout
    assert dry == "would delete 5 finished task(s) (dry run: nothing deleted)\n"
    assert app.get_task(finished[0]) is not None
    done = aana(
        "tasks", "purge", "--older-than", "10m", "--chunk-size", "2", "--json", db=db
    ).stdout
    assert json.loads(done) == {"deleted": 5}


def run_on_a_terminal(args: list[str], db: DbSettings, answer: bytes) -> tuple[int, str]:
    """Run ``python -m aana.cli args`` with a pseudo-terminal as stdin and stdout."""
    main, child = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "aana.cli", *args],
        cwd=REPO_ROOT,
        env=environment(db),
        stdin=child,
        stdout=child,
        stderr=child,
    )
    os.close(child)
    os.write(main, answer)
    output = b""
    while True:
        try:
            chunk = os.read(main, 4096)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        output += chunk
    os.close(main)
    return process.wait(timeout=60), output.decode(errors="replace")


def test_purge__asks_on_a_terminal_unless_yes(db: DbSettings) -> None:
    app = AanaSDK()
    task_id = app.defer("e", {})
    with get_session() as session:
        TaskRepository(session).update_status(task_id, Status.COMPLETED)
        backdate(session, [task_id], 3600, columns=["completed_at"])
    code, output = run_on_a_terminal(["tasks", "purge", "--older-than", "1m"], db, b"n\n")
    assert code == 1 and "Delete 1 finished task(s) older than 1m? [y/N]" in output
    assert app.get_task(task_id) is not None
    code, output = run_on_a_terminal(["tasks", "purge", "--older-than", "1m"], db, b"y\n")
    assert code == 0 and "deleted 1 finished task(s)" in output


def test_entity_repr__shows_id_and_key_fields(session: Session) -> None:
    task = TaskRepository(session).save("transcribe", {"n": 1}, user_id="alice")
    assert repr(task) == (
        f"TaskEntity(id={str(task.id)!r}, endpoint='transcribe', status='created', "
        "user_id='alice', priority=0)"
    )
    video = VideoEntity(id="v1", title="A title")
    assert repr(video).startswith("VideoEntity(id='v1', ")
    assert "title='A title'" in repr(video)
    assert (
        repr(CaptionEntity(model="blip", frame_id=3)) == "CaptionEntity(model='blip', frame_id=3)"
    )
    session.expunge_all()
    session.close()
    assert repr(task).startswith("TaskEntity(id=")  # detached: still no query, no error
    assert isinstance(task, TaskEntity)
