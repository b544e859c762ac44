"""Task-queue benchmark: aana's worker runtime beside pgqueuer and plain-driver loops.

Run from the repository root (PostgreSQL at 127.0.0.1:5432, user postgres):

    PYTHONPATH=. python benchmarks/bench_queue.py

Every figure is measured on a fresh database; worker processes are started and idle
before the tasks are deferred, so process start-up is not counted. Throughput
comparisons alternate the two sides ROUNDS times and keep the best run of each: single
runs vary by a third on this 2-core machine, where the workers share the CPUs with
PostgreSQL.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from aana.configs.db import DbSettings  # noqa: E402
from aana.configs.settings import Settings, settings  # noqa: E402
from aana.sdk import AanaSDK  # noqa: E402
from aana.storage.models import Status  # noqa: E402
from aana.storage.op import run_alembic_migrations  # noqa: E402
from aana.storage.repository import TaskRepository  # noqa: E402
from aana.storage.session import get_session  # noqa: E402

PG = {"host": "127.0.0.1", "port": 5432, "user": "postgres", "password": ""}
PROCESSES = 4
TASKS = 5000
ROUNDS = 5
ROUNDS_NOTE = f"{PROCESSES} processes, best of {ROUNDS}"


def report(name: str, value: float, unit: str = "tasks/s") -> None:
    shown = f"{value:.2f}" if unit == "x" else f"{value:.1f}"
    print(f"{name:<58} {shown:>10} {unit}", flush=True)


# --- databases ---


def new_pg_database() -> DbSettings:
    name = f"aana_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(dbname="postgres", autocommit=True, **PG) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    db = DbSettings(datastore_type="postgresql", datastore_config={**PG, "database": name})
    run_alembic_migrations(Settings(db_config=db))
    return db


def drop_pg_database(db: DbSettings) -> None:
    db.get_engine().dispose()
    name = db.datastore_config["database"]  # type: ignore[typeddict-item]
    with psycopg.connect(dbname="postgres", autocommit=True, **PG) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def new_sqlite_database(folder: Path) -> DbSettings:
    db = DbSettings(datastore_config={"path": str(folder / f"{uuid.uuid4().hex}.db")})
    run_alembic_migrations(Settings(db_config=db))
    return db


def use(db: DbSettings) -> AanaSDK:
    settings.db_config = db
    return AanaSDK()


def pg_dsn(db: DbSettings) -> str:
    config = db.datastore_config
    database = config["database"]  # type: ignore[typeddict-item]
    return f"host={PG['host']} port={PG['port']} user={PG['user']} dbname={database}"


def count_status(status: Status) -> int:
    with get_session() as session:
        return TaskRepository(session).count()[status.value]


def wait_until(condition, timeout: float = 300.0, step: float = 0.005) -> float:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("benchmark step did not finish")
        time.sleep(step)
    return time.perf_counter()


# --- aana's worker runtime (the real CLI, as deployed) ---


def start_workers(db: DbSettings, *extra: str) -> subprocess.Popen[str]:
    config = {
        "datastore_type": str(db.datastore_type.value),
        "datastore_config": dict(db.datastore_config),
    }
    env = {
        **os.environ,
        "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'benchmarks'}",
        "DB_CONFIG": json.dumps(config),
    }
    command = [sys.executable, "-m", "aana.cli", "worker", "bench_app:app", *extra]
    return subprocess.Popen(
        command,
        cwd=ROOT / "benchmarks",
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def stop_workers(process: subprocess.Popen[str]) -> None:
    process.send_signal(signal.SIGTERM)
    process.wait(60)


def worker_runtime_rate(db: DbSettings, label: str) -> float:
    """Tasks per second of the worker CLI, and a check that each task ran once."""
    app = use(db)
    workers = start_workers(
        db,
        "--processes",
        str(PROCESSES),
        "--concurrency",
        "10",
        "--max-active-per-user",
        "0",
    )
    # Warm-up: one task per process proves every worker is up and listening.
    app.defer_many("noop", [{} for _ in range(PROCESSES * 10)])
    wait_until(lambda: count_status(Status.COMPLETED) == PROCESSES * 10, step=0.05)
    time.sleep(1.0)
    start = time.perf_counter()
    app.defer_many("noop", [{"n": n} for n in range(TASKS)])
    # Polled every 20 ms: polling faster would load the two CPUs the workers share.
    end = wait_until(lambda: count_status(Status.COMPLETED) == TASKS + PROCESSES * 10, step=0.02)
    stop_workers(workers)
    with get_session() as session:
        counts = TaskRepository(session).count()
        retries = {t.num_retries for t in TaskRepository(session).get_tasks(limit=TASKS + 100)}
    exactly_once = counts["completed"] == counts["total"] and retries == {1}
    rate = TASKS / (end - start)
    print(
        f"  {label} worker run: {rate:.0f} tasks/s, exactly once: {exactly_once} "
        f"(claims per task: {sorted(retries)})",
        flush=True,
    )
    return rate


# --- pgqueuer, same machine, same PostgreSQL ---


def _pgqueuer_consumer(dsn: str, ready: multiprocessing.Event) -> None:  # type: ignore[valid-type]
    from pgqueuer import PsycopgDriver, Queries, QueueManager
    from pgqueuer.domain.types import QueueExecutionMode

    async def main() -> None:
        connection = await psycopg.AsyncConnection.connect(dsn, autocommit=True)
        manager = QueueManager(Queries(PsycopgDriver(connection)))

        @manager.entrypoint("noop")
        async def noop(job: object) -> None:
            return None

        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, manager.shutdown.set)
        ready.set()  # type: ignore[attr-defined]
        await manager.run(batch_size=10, mode=QueueExecutionMode.continuous)

    asyncio.run(main())


def pgqueuer_rate(db: DbSettings) -> float:
    """Jobs per second of pgqueuer's consumers, started and idle before the jobs come."""
    from pgqueuer import PsycopgDriver, Queries

    dsn = pg_dsn(db)

    async def install_and(action: str, count: int = 0) -> int:
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as connection:
            queries = Queries(PsycopgDriver(connection))
            if action == "install":
                await queries.install()
            elif action == "enqueue":
                await queries.enqueue(["noop"] * count, [None] * count, [0] * count)
            cursor = await connection.execute("SELECT count(*) FROM pgqueuer")
            row = await cursor.fetchone()
            return int(row[0]) if row else 0

    asyncio.run(install_and("install"))
    context = multiprocessing.get_context("spawn")
    readies = [context.Event() for _ in range(PROCESSES)]
    consumers = [context.Process(target=_pgqueuer_consumer, args=(dsn, ready)) for ready in readies]
    for consumer in consumers:
        consumer.start()
    for ready in readies:
        ready.wait(60)
    asyncio.run(install_and("enqueue", PROCESSES * 10))
    wait_until(lambda: asyncio.run(install_and("count")) == 0, step=0.05)
    time.sleep(1.0)
    start = time.perf_counter()
    asyncio.run(install_and("enqueue", TASKS))
    with psycopg.connect(dsn, autocommit=True) as connection:
        end = wait_until(
            lambda: connection.execute("SELECT count(*) FROM pgqueuer").fetchone()[0] == 0
        )  # type: ignore[index]
    for consumer in consumers:
        consumer.terminate()
    for consumer in consumers:
        consumer.join(30)
    rate = TASKS / (end - start)
    print(f"  pgqueuer run: {rate:.0f} jobs/s", flush=True)
    return rate


def _pgqueuer_version() -> str:
    import pgqueuer

    return str(getattr(pgqueuer, "__version__", "?"))


# --- repository loop vs a plain driver loop (4 processes each) ---


def _repository_loop(db_json: str, go: multiprocessing.Event) -> None:  # type: ignore[valid-type]
    settings.db_config = DbSettings.model_validate_json(db_json)
    with get_session() as session:
        repository = TaskRepository(session)
        # Connect and compile before the clock starts, as the plain loop connects first:
        # a claim of no task touches nothing.
        repository.fetch_unprocessed_tasks(limit=0)
        go.wait()  # type: ignore[attr-defined]
        while tasks := repository.fetch_unprocessed_tasks(limit=10):
            for task in tasks:
                repository.update_status(task.id, Status.COMPLETED)


PLAIN_CLAIM_PG = """
UPDATE tasks SET status = 'assigned', assigned_at = now(), updated_at = now(),
       num_retries = num_retries + 1
WHERE id IN (SELECT id FROM tasks WHERE status IN ('created', 'not_finished')
             ORDER BY priority DESC, created_at, id LIMIT 10 FOR UPDATE SKIP LOCKED)
RETURNING id"""
PLAIN_DONE_PG = (
    "UPDATE tasks SET status = 'completed', completed_at = now(), updated_at = now() WHERE id = %s"
)


def _plain_psycopg_loop(dsn: str, go: multiprocessing.Event) -> None:  # type: ignore[valid-type]
    with psycopg.connect(dsn) as connection:
        go.wait()  # type: ignore[attr-defined]
        while True:
            with connection.transaction():
                ids = [row[0] for row in connection.execute(PLAIN_CLAIM_PG)]
            if not ids:
                return
            for task_id in ids:
                with connection.transaction():
                    connection.execute(PLAIN_DONE_PG, (task_id,))


NOW_SQLITE = "strftime('%Y-%m-%d %H:%M:%f000', 'now')"
# likelihood(): without it SQLite's planner sorts every claimable task through the status
# index instead of reading the claim-order index; aana's claim has it, so the baseline too.
PLAIN_CLAIM_SQLITE = f"""
UPDATE tasks SET status = 'assigned', assigned_at = {NOW_SQLITE}, updated_at = {NOW_SQLITE},
       num_retries = num_retries + 1
WHERE id IN (SELECT id FROM tasks WHERE likelihood(status IN ('created', 'not_finished'), 0.9)
             ORDER BY priority DESC, created_at, id LIMIT 10)
RETURNING id"""
PLAIN_DONE_SQLITE = (
    f"UPDATE tasks SET status = 'completed', completed_at = {NOW_SQLITE}, "
    f"updated_at = {NOW_SQLITE} WHERE id = ?"
)


def _plain_sqlite_loop(path: str, go: multiprocessing.Event) -> None:  # type: ignore[valid-type]
    connection = sqlite3.connect(path, timeout=30, isolation_level=None)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=NORMAL")
    go.wait()  # type: ignore[attr-defined]
    while True:
        connection.execute("BEGIN IMMEDIATE")
        ids = [row[0] for row in connection.execute(PLAIN_CLAIM_SQLITE).fetchall()]
        connection.execute("COMMIT")
        if not ids:
            return
        for task_id in ids:
            connection.execute("BEGIN IMMEDIATE")
            connection.execute(PLAIN_DONE_SQLITE, (task_id,))
            connection.execute("COMMIT")


def run_loops(target, argument: str) -> float:  # type: ignore[no-untyped-def]
    context = multiprocessing.get_context("spawn")
    go = context.Event()
    processes = [context.Process(target=target, args=(argument, go)) for _ in range(PROCESSES)]
    for process in processes:
        process.start()
    time.sleep(2.0)  # let every process import and connect
    start = time.perf_counter()
    go.set()
    for process in processes:
        process.join()
    return time.perf_counter() - start


def loop_rate_pg(target, argument) -> float:  # type: ignore[no-untyped-def]
    """Tasks per second of a claim loop on a fresh database of TASKS tasks."""
    db = new_pg_database()
    try:
        use(db).defer_many("noop", [{"n": n} for n in range(TASKS)])
        rate = TASKS / run_loops(target, argument(db))
        assert count_status(Status.COMPLETED) == TASKS
    finally:
        drop_pg_database(db)
    return rate


def bench_loops_pg() -> None:
    repository_rates, plain_rates = [], []
    for _ in range(ROUNDS):
        repository_rates.append(loop_rate_pg(_repository_loop, DbSettings.model_dump_json))
        plain_rates.append(loop_rate_pg(_plain_psycopg_loop, pg_dsn))
        print(
            f"  loop run: repository {repository_rates[-1]:.0f} tasks/s, "
            f"plain {plain_rates[-1]:.0f} tasks/s",
            flush=True,
        )
    repository_rate, plain_rate = max(repository_rates), max(plain_rates)
    report(f"PostgreSQL: plain psycopg claim loop (SKIP LOCKED), {ROUNDS_NOTE}", plain_rate)
    report(
        f"PostgreSQL: repository loop (fetch 10 + update_status), {ROUNDS_NOTE}", repository_rate
    )
    report("  ratio repository / plain", repository_rate / plain_rate, "x")


# --- defer throughput and idle-worker latency ---


def bench_defer(db: DbSettings) -> None:
    app = use(db)
    count = 2000
    start = time.perf_counter()
    for n in range(count):
        app.defer("noop", {"n": n})
    report("PostgreSQL: single defer", count / (time.perf_counter() - start))
    batch = [{"n": n} for n in range(50_000)]
    start = time.perf_counter()
    for offset in range(0, len(batch), 5000):
        app.defer_many("noop", batch[offset : offset + 5000])
    report(
        "PostgreSQL: batch defer (defer_many, 5,000 per call)",
        len(batch) / (time.perf_counter() - start),
    )


def bench_latency(db: DbSettings, per_user_limit: bool) -> None:
    app = use(db)
    limit = [] if per_user_limit else ["--max-active-per-user", "0"]
    worker = start_workers(db, "--processes", "1", "--concurrency", "1", *limit)
    ids = app.defer_many("stamp", [{} for _ in range(3)])
    wait_until(lambda: all(app.get_task(i).status == Status.COMPLETED for i in ids), step=0.05)
    latencies = []
    for _ in range(100):
        time.sleep(0.02)  # the worker is idle, waiting on LISTEN
        before = time.time()
        task_id = app.defer("stamp", {})
        wait_until(
            lambda task_id=task_id: app.get_task(task_id).status == Status.COMPLETED, step=0.002
        )
        latencies.append((app.get_task(task_id).result - before) * 1000)
    stop_workers(worker)
    label = "per-user limit 25" if per_user_limit else "no per-user limit"
    report(
        f"PostgreSQL: idle worker ({label}), defer -> handler start, median",
        statistics.median(latencies),
        "ms",
    )
    report(
        f"PostgreSQL: idle worker ({label}), defer -> handler start, p95",
        sorted(latencies)[94],
        "ms",
    )


# --- SQLite ---


def plain_sqlite_rate(folder: Path) -> float:
    """Tasks per second of the plain sqlite3 claim loop on a fresh database."""
    db = new_sqlite_database(folder)
    use(db).defer_many("noop", [{"n": n} for n in range(TASKS)])
    path = str(db.datastore_config["path"])  # type: ignore[typeddict-item]
    rate = TASKS / run_loops(_plain_sqlite_loop, path)
    assert count_status(Status.COMPLETED) == TASKS
    db.get_engine().dispose()
    return rate


def bench_sqlite(folder: Path) -> None:
    worker_rates, plain_rates = [], []
    for _ in range(ROUNDS):
        db = new_sqlite_database(folder)
        worker_rates.append(worker_runtime_rate(db, "SQLite"))
        db.get_engine().dispose()
        plain_rates.append(plain_sqlite_rate(folder))
        print(f"  plain sqlite3 run: {plain_rates[-1]:.0f} tasks/s", flush=True)
    worker_rate, plain_rate = max(worker_rates), max(plain_rates)
    report(f"SQLite: worker runtime, {ROUNDS_NOTE}, {TASKS} no-op tasks", worker_rate)
    report(f"SQLite: plain sqlite3 claim loop (BEGIN IMMEDIATE), {ROUNDS_NOTE}", plain_rate)
    report("  ratio worker runtime / plain", worker_rate / plain_rate, "x")


def on_fresh_pg_database(measure):  # type: ignore[no-untyped-def]
    db = new_pg_database()
    try:
        return measure(db)
    finally:
        drop_pg_database(db)


def bench_worker_vs_pgqueuer(with_pgqueuer: bool) -> None:
    worker_rates, pgqueuer_rates = [], []
    for _ in range(ROUNDS):
        worker_rates.append(on_fresh_pg_database(lambda db: worker_runtime_rate(db, "PostgreSQL")))
        if with_pgqueuer:
            pgqueuer_rates.append(on_fresh_pg_database(pgqueuer_rate))
    label = f"{ROUNDS_NOTE}, {TASKS} no-op tasks"
    report(f"PostgreSQL: worker runtime, {label}", max(worker_rates))
    if with_pgqueuer:
        report(f"pgqueuer {_pgqueuer_version()}: {label}", max(pgqueuer_rates))
        report("  ratio worker runtime / pgqueuer", max(worker_rates) / max(pgqueuer_rates), "x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--skip-pgqueuer", action="store_true")
    arguments = parser.parse_args()
    print(f"{os.cpu_count()} CPUs; {PROCESSES} processes; {TASKS} tasks", flush=True)
    bench_worker_vs_pgqueuer(not arguments.skip_pgqueuer)
    bench_loops_pg()
    on_fresh_pg_database(bench_defer)
    for per_user_limit in (False, True):
        on_fresh_pg_database(lambda db, limit=per_user_limit: bench_latency(db, limit))
    with tempfile.TemporaryDirectory() as folder:
        bench_sqlite(Path(folder))


if __name__ == "__main__":
    main()
