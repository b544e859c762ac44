"""Worker processes, as deployed: exactly-once claims and crash recovery, per backend."""

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import func, select, text

from aana.sdk import AanaSDK
from aana.storage.models import Status, TaskEntity
from aana.storage.models.worker import WorkerEntity
from aana.storage.session import get_session
from tests.helpers import REPO_ROOT, backdate, environment, wait_until

APP = "tests.tasks.queue_app:app"

pytestmark = pytest.mark.slow


def worker_process(db, record_dir, *args):
    command = [sys.executable, "-m", "aana.cli", "worker", APP, *args]
    return subprocess.Popen(
        command,
        cwd=REPO_ROOT,
        env=environment(db, AANA_TEST_RECORD=str(record_dir)),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def runs(record_dir, pid="*"):
    """How many times each task ``n`` was started: by any process, or by the one ``pid``."""
    counts = Counter()
    for path in Path(record_dir).glob(f"{pid}.txt"):
        counts.update(int(line) for line in path.read_text().split())
    return counts


def statuses():
    with get_session() as session:
        query = select(TaskEntity.status, func.count()).group_by(TaskEntity.status)
        return {Status(status): number for status, number in session.execute(query)}


def stop_when(worker, condition):
    """Wait for ``condition``, then stop the worker process as a deployment does (SIGTERM)."""
    try:
        wait_until(condition, timeout=60, interval=0.05)
    finally:
        worker.send_signal(signal.SIGTERM)
        output, _ = worker.communicate(timeout=30)
    assert worker.returncode == 0, output


def silence(task_ids):
    """Make the tasks' last heartbeat two minutes old, as if their worker died back then."""
    with get_session() as session:
        backdate(session, task_ids, 120, columns=["updated_at"])


def ids_in(*states):
    with get_session() as session:
        return set(session.scalars(select(TaskEntity.id).where(TaskEntity.status.in_(states))))


@pytest.mark.parametrize("prefetch", ["0", "8"])
def test_exactly_once__four_processes_five_thousand_tasks(db, tmp_path, prefetch):
    app = AanaSDK()
    app.defer_many("record", [{"n": n} for n in range(5000)])
    options = ["--processes", "4", "--concurrency", "4", "--prefetch", prefetch]
    worker = worker_process(db, tmp_path, *options, "--burst", "--poll-interval", "0.1")
    output, _ = worker.communicate(timeout=240)
    assert worker.returncode == 0, output
    counts = runs(tmp_path)
    assert len(counts) == 5000, "some tasks never ran"
    assert max(counts.values()) == 1, f"ran twice: {[n for n, c in counts.items() if c > 1][:10]}"
    assert statuses() == {Status.COMPLETED: 5000}
    with get_session() as session:
        assert session.scalar(select(func.max(TaskEntity.num_retries))) == 1
    assert len(list(tmp_path.glob("*.txt"))) >= 2, "the processes did not share the work"


def test_crash__killed_workers_tasks_rerun_after_heartbeat_timeout(db, tmp_path):
    app = AanaSDK()
    ids = app.defer_many("nap", [{"n": n, "seconds": 0.3} for n in range(12)])
    options = ["-p", "1", "--concurrency", "3", "--heartbeat-timeout", "60"]
    options += ["--poll-interval", "0.1"]
    victim = worker_process(db, tmp_path, *options)
    wait_until(lambda: statuses().get(Status.RUNNING, 0) >= 3, timeout=60, interval=0.05)
    victim.kill()  # SIGKILL: no chance to hand anything back
    victim.communicate()
    lost = ids_in(Status.ASSIGNED, Status.RUNNING)
    assert lost
    done_before = ids_in(Status.COMPLETED)
    silence(lost)
    rescuer = worker_process(db, tmp_path, *options)
    stop_when(rescuer, lambda: statuses() == {Status.COMPLETED: 12})
    tasks = [app.get_task(task_id) for task_id in ids]
    assert {task.id for task in tasks if task.num_retries == 2} == lost
    assert all(task.result == n for n, task in enumerate(tasks))
    # The rescuer ran every task the victim had not finished, each once; the victim had
    # started some of the lost ones (or not yet), never one twice.
    left = {n for n, task in enumerate(tasks) if task.id not in done_before}
    assert runs(tmp_path, rescuer.pid) == Counter(left)
    assert set(runs(tmp_path, victim.pid).values()) <= {1}


def test_crash__task_that_always_kills_its_worker_fails_after_max_retries(db, tmp_path):
    app = AanaSDK()
    task_id = app.defer("die", {"n": 0})
    options = ["-p", "1", "--heartbeat-timeout", "60", "--max-retries", "2"]
    options += ["--poll-interval", "0.1"]
    for attempt in (1, 2):
        worker = worker_process(db, tmp_path, *options)
        try:
            output, _ = worker.communicate(timeout=60)
        finally:
            worker.kill()
        assert worker.returncode == -signal.SIGKILL, output  # killed by the task
        task = app.get_task(task_id)
        assert (task.status, task.num_retries) == (Status.RUNNING, attempt)
        silence([task_id])
    # The next worker finds the task lost for the second time: no attempt is left.
    last = worker_process(db, tmp_path, *options)
    stop_when(last, lambda: app.get_task(task_id).status == Status.FAILED)
    task = app.get_task(task_id)
    assert task.result["error"] == "HeartbeatTimeoutError"
    assert task.num_retries == 2
    assert runs(tmp_path)[0] == 2
    assert statuses() == {Status.FAILED: 1}


def test_worker_processes__import_neither_the_command_line_nor_the_orm_nor_settings(db, tmp_path):
    app = AanaSDK()
    ids = app.defer_many("modules", [{} for _ in range(8)])
    worker = worker_process(db, tmp_path, "--processes", "2", "--burst", "--poll-interval", "0.1")
    output, _ = worker.communicate(timeout=120)
    assert worker.returncode == 0, output
    results = [app.get_task(task_id).result for task_id in ids]
    names = ["aana.cli", "aana.tasks.cli", "click", "alembic", "sqlalchemy.orm", "pydantic"]
    names += ["aana.configs", "aana.storage.models"]
    assert results == [dict.fromkeys(names, False)] * 8


def drop_tasks_table():
    with get_session() as session:
        session.execute(text("DROP TABLE tasks"))
        session.commit()


@pytest.mark.parametrize("processes", ["1", "2"])
def test_burst__database_failure_exits_non_zero_with_one_line(db, tmp_path, processes):
    drop_tasks_table()
    result = subprocess.run(
        [sys.executable, "-m", "aana.cli", "worker", APP, "--processes", processes, "--burst"],
        cwd=REPO_ROOT,
        env=environment(db, AANA_TEST_RECORD=str(tmp_path)),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if "claiming tasks failed" in line]
    assert len(errors) == int(processes), result.stderr
    assert "tasks" in errors[0]


def test_burst__empty_queue_exits_zero(db, tmp_path):
    worker = worker_process(db, tmp_path, "--processes", "1", "--burst")
    output, _ = worker.communicate(timeout=120)
    assert worker.returncode == 0, output


def resident_kb(pid):
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS")))


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads Linux's /proc")
def test_supervisor__replaces_the_command_with_a_small_process(db, tmp_path):
    app = AanaSDK()
    worker = worker_process(db, tmp_path, "--processes", "2", "--poll-interval", "0.1")
    children_file = Path(f"/proc/{worker.pid}/task/{worker.pid}/children")
    task_id = app.defer("record", {"n": 1})
    try:
        wait_until(lambda: app.get_task(task_id).status == Status.COMPLETED, timeout=60)
        wait_until(lambda: len(children_file.read_text().split()) == 2, timeout=30)
        command = Path(f"/proc/{worker.pid}/cmdline").read_text().split("\0")
        assert command[1:4] == ["-m", "aana.tasks.supervisor", "--supervise"]
        children = [int(pid) for pid in children_file.read_text().split()]
        # The options (a listen_url may hold a password) and the database (an EngineSpec,
        # password included) are in no command line: every user of the machine reads those.
        for pid in (worker.pid, *children):
            command_line = Path(f"/proc/{pid}/cmdline").read_text()
            assert "concurrency" not in command_line
            assert "datastore_config" not in command_line
        # It imports neither SQLAlchemy nor the application: a fraction of a worker's size.
        assert resident_kb(worker.pid) * 2 < min(resident_kb(pid) for pid in children)
    finally:
        worker.send_signal(signal.SIGTERM)
        output, _ = worker.communicate(timeout=30)
    assert worker.returncode == 0, output


def test_signal__to_the_whole_process_group_is_one_stop_request(db, tmp_path):
    """``timeout``, a terminal or systemd signal every process; the supervisor forwards too.

    Each worker then gets SIGTERM twice at once: that is one request to stop (running
    tasks finish), not a second one (running tasks handed back).
    """
    app = AanaSDK()
    worker = subprocess.Popen(
        [sys.executable, "-m", "aana.cli", "worker", APP, "--processes", "2"],
        cwd=REPO_ROOT,
        env=environment(db, AANA_TEST_RECORD=str(tmp_path)),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group, as under a terminal
    )
    task_id = app.defer("nap", {"n": 1, "seconds": 1.5})
    try:
        wait_until(lambda: runs(tmp_path)[1] == 1, timeout=60, interval=0.02)
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        output, _ = worker.communicate(timeout=60)
    assert worker.returncode == 0, output
    assert "second signal" not in output
    assert app.get_task(task_id).status == Status.COMPLETED


def test_signal__to_the_whole_process_group_every_worker_ends_in_order(db, tmp_path):
    """As ``timeout`` stops a command: SIGTERM to it, then to its whole process group.

    The supervisor gets the signal twice and forwards it once. Idle workers stop in a
    few milliseconds; a later copy of the signal must not find one whose handlers were
    already restored, killing it before its last steps: logging that it stopped and
    removing its ``workers`` row.
    """
    for delay in (0.005, 0.01, 0.02, 0.04):
        worker = subprocess.Popen(
            [sys.executable, "-m", "aana.cli", "worker", APP, "--processes", "4"],
            cwd=REPO_ROOT,
            env=environment(db),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        try:
            wait_until(lambda: worker_rows() == 4, timeout=60, interval=0.02)
        finally:
            os.kill(worker.pid, signal.SIGTERM)
            time.sleep(delay)  # the copies' spread, from none to a worker's whole stop
            os.killpg(worker.pid, signal.SIGTERM)
            output, _ = worker.communicate(timeout=60)
        assert worker.returncode == 0, output
        assert output.count("worker stopped after") == 4, output
        assert output.count("stopping 4 worker process(es)") == 1, output
        assert worker_rows() == 0


def worker_rows():
    with get_session() as session:
        return session.scalar(select(func.count()).select_from(WorkerEntity))


def test_signal__a_second_one_hands_running_tasks_back_at_once(db, tmp_path):
    app = AanaSDK()
    worker = worker_process(db, tmp_path, "--processes", "1", "--shutdown-grace", "60")
    task_id = app.defer("nap", {"n": 1, "seconds": 60})
    try:
        wait_until(lambda: runs(tmp_path)[1] == 1, timeout=60, interval=0.02)
        worker.send_signal(signal.SIGTERM)
        time.sleep(1.0)  # apart by more than one delivery's spread: a second request
        worker.send_signal(signal.SIGTERM)
        output, _ = worker.communicate(timeout=30)  # long before the 60 s grace or nap
    finally:
        if worker.poll() is None:
            worker.kill()
    assert worker.returncode == 0, output
    assert "second signal: handing back running tasks now" in output
    assert app.get_task(task_id).status == Status.NOT_FINISHED
