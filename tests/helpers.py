"""Helpers shared by the tests: the database clock, waiting, threads and subprocesses.

Fixtures live in the ``conftest.py`` files; plain functions used by more than one test
module live here, once.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, event, text, update
from sqlalchemy.orm import Session

from aana.configs.db import DbSettings
from aana.core.models import Video
from aana.exceptions.db import MediaIdAlreadyExistsException
from aana.storage.dialects import utcnow
from aana.storage.models import TaskEntity
from aana.storage.queue_sql import ClaimRequest
from aana.storage.repository import VideoRepository
from aana.storage.session import get_session

REPO_ROOT = Path(__file__).resolve().parents[1]

BOTH_BACKENDS = pytest.mark.parametrize("empty_db", ["sqlite", "postgresql"], indirect=True)
"""Run a test that uses ``empty_db`` once on SQLite and once on PostgreSQL."""


def backdate(
    session: Session,
    ids: Iterable[Any],
    seconds: float,
    columns: Iterable[str] = ("assigned_at", "updated_at"),
    entity: type = TaskEntity,
) -> None:
    """Set ``columns`` of the rows ``ids`` to the database clock minus ``seconds``, and commit.

    Tests of timeouts and of timestamps that move use this instead of sleeping: the
    rows look as old as the test needs, measured by the same clock the code compares
    with, so no test depends on how long a sleep lasted. The session's objects are
    expired, so later reads see the stored values. Ids may be given as text (task ids).
    ``updated_at``, unless it is one of ``columns``, moves to now like on any update.
    """
    key_type = entity.__table__.c.id.type.python_type
    id_list = [key if isinstance(key, key_type) else key_type(key) for key in ids]
    statement = (
        update(entity)
        .where(entity.id.in_(id_list))
        .values({column: utcnow(-seconds) for column in columns})
        .execution_options(synchronize_session=False)
    )
    changed = session.execute(statement).rowcount
    session.commit()
    session.expire_all()
    if not isinstance(session, Session):
        # An AsyncSession (tests/apis.py) cannot load expired objects on access: load now.
        for loaded in list(session.identity_map.values()):
            session.refresh(loaded)
    assert changed == len(set(id_list)), f"backdated {changed} of the rows {id_list}"


def wait_until(
    condition: Callable[[], object],
    timeout: float = 10.0,
    interval: float = 0.01,
    describe: Callable[[], str] | None = None,
) -> None:
    """Poll ``condition`` until it holds; fail the test if ``timeout`` seconds pass first.

    ``describe`` says, when the wait fails, what the test saw (state worth reading).
    """
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() >= deadline:
            seen = f"\n{describe()}" if describe else ""
            raise AssertionError(f"condition not met within {timeout} s{seen}")
        time.sleep(interval)


def run_in_threads(*targets: Callable[[], object]) -> None:
    """Run each target in a thread of its own, wait for all, and re-raise the first error."""
    errors: list[BaseException] = []

    def call(target: Callable[[], object]) -> None:
        try:
            target()
        except BaseException as error:  # handed to the test's thread below
            errors.append(error)

    threads = [threading.Thread(target=call, args=(target,)) for target in targets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]


def save_contested_video(barrier: Any) -> str:
    """Save the video ``contested`` once ``barrier`` lets every racer go.

    Returns:
        ``"won"``, ``"duplicate"`` (the exception, and the session still answers), or
        ``"broken"`` (the exception, but the session no longer answers).

    """
    with get_session() as session:
        repository = VideoRepository(session)
        barrier.wait()
        try:
            repository.save(Video(url="https://example.com/v.mp4", media_id="contested"))
        except MediaIdAlreadyExistsException:
            return "duplicate" if repository.check_media_exists("contested") else "broken"
        return "won"


def environment(db: DbSettings, **extra: str) -> dict[str, str]:
    """The environment of a subprocess using ``db``, importing this checkout of aana."""
    python_path = os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))
    return {
        **os.environ,
        "PYTHONPATH": python_path,
        "DB_CONFIG": db.model_dump_json(),
        **extra,
    }


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
    *args: str, cwd: Path = REPO_ROOT, db: DbSettings, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run the ``aana`` command line (``python -m aana.cli``)."""
    return run(["-m", "aana.cli", *args], cwd, db, check)


def race(db: DbSettings, folder: Path, script: str, *arguments: str, racers: int = 4) -> list[Any]:
    """Run ``racers`` processes of ``script`` that start together; their JSON outputs.

    Each is called as ``script GO N *arguments``: it writes ``GO.N.ready`` once connected
    and waiting, and starts when the file ``GO`` appears.
    """
    start = folder / "go"
    processes = [
        subprocess.Popen(
            [sys.executable, script, str(start), str(n), *arguments],
            env=environment(db),
            cwd=REPO_ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(racers)
    ]
    wait_until(lambda: len(list(folder.glob("go.*.ready"))) == racers, timeout=60)
    start.touch()
    outputs = []
    for process in processes:
        output, errors = process.communicate(timeout=120)
        assert process.returncode == 0, errors
        outputs.append(json.loads(output))
    return outputs


def nested(levels: int) -> list[Any]:
    """An empty list inside ``levels`` more lists: ``levels + 1`` levels of nesting."""
    value: list[Any] = []
    for _ in range(levels):
        value = [value]
    return value


CLAIM_REQUESTS = {
    "plain": ClaimRequest(3, 3, (), 0),
    "all": ClaimRequest(None, 3, [], None),
    "per-user": ClaimRequest(4, 3, (), 1),
    "retryable": ClaimRequest(6, 3, ["TimeoutError"], 0),
    "retryable-per-user": ClaimRequest(6, 2, ("TimeoutError", "OSError"), 2),
}
"""Kinds of claim, to run on ``mixed_queue``: each claims something there."""


def mixed_queue(app: Any, engine: Any) -> None:
    """Waiting tasks of several users and priorities, and failed ones.

    User "cy" has four FAILED tasks, each tried once but the last (three times): with
    TimeoutError, OSError, ValueError and TimeoutError; retry rules tell them apart.
    """
    for n, (user, priority) in enumerate(
        [("ann", 0), ("ann", 5), ("ann", 0), ("bob", 1), (None, 0), (None, 9), ("bob", 0)]
    ):
        app.defer("ep", {"n": n}, user_id=user, priority=priority)
    failed = app.defer_many("ep", [{"failed": n} for n in range(4)], user_id="cy")
    errors = ["TimeoutError", "OSError", "ValueError", "TimeoutError"]
    as_error = (
        "json_object('error', :error)"
        if engine.dialect.name == "sqlite"
        else "jsonb_build_object('error', CAST(:error AS text))"
    )
    with engine.begin() as connection:
        for task_id, error, retries in zip(failed, errors, [1, 1, 1, 3], strict=True):
            connection.execute(
                text(
                    "UPDATE tasks SET status = 'failed', num_retries = :retries,"
                    f" result = {as_error} WHERE id = :id"
                ),
                {"retries": retries, "error": error, "id": task_id},
            )


@contextlib.contextmanager
def statements_sent(engine: Engine) -> Iterator[list[tuple[str, Any]]]:
    """The statements ``engine`` sends to the driver in the block, with their parameters."""
    sent: list[tuple[str, Any]] = []

    def record(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        sent.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield sent
    finally:
        event.remove(engine, "before_cursor_execute", record)
