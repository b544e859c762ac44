"""Task-queue benchmark: ``aana worker`` beside pgqueuer and plain-driver loops.

Run from the repository root (PostgreSQL at 127.0.0.1:5432, user postgres;
``pip install -r benchmarks/requirements.txt``):

    PYTHONPATH=. python benchmarks/bench_queue.py [--tasks 5000] [--rounds 5]
        [--only pgqueuer,sqlite,loops,defer,latency,memory]

Both queues run as their users run them: ``aana worker bench_app:app --processes 4
--concurrency 10 --max-active-per-user 0`` (pgqueuer has no per-user limit), and four
pgqueuer consumer processes, each ``pgqueuer.run(create_pgqueuer, batch_size=10)`` (what
``pgq run ... --batch-size 10`` runs; see benchmarks/bench_pgqueuer_app.py) on pgqueuer's
recommended driver, asyncpg, continuous mode. Every run gets a fresh database.

Throughput is measured in two modes, by the same method for every side:

- **prefilled**: all the tasks are stored first, then the consumers start on that
  backlog.
- **prefilled-analysed**: the same, with ``ANALYZE`` run on the side's queue table
  after the tasks are stored, as autovacuum would have analysed a table that many rows
  were written to (its default: at most a minute after 50 rows plus 10 %). The
  PostgreSQL this benchmark was written on runs with ``autovacuum = off``, so there the
  other modes drain tables the planner has no statistics for. Printed for comparison;
  the target applies to the prefilled mode.
- **idle-first**: the consumers start on an empty queue, run a warm-up of 10 tasks per
  process, sit idle for a second, then all the tasks are stored in one call (one
  transaction) and woken consumers drain them. The clock includes that call.

The prefilled mode is run once more with ``aana worker ... --prefetch 10``: each process
may hold up to 10 claimed tasks beyond its 10 running ones, so a thread that finishes
starts the next task without waiting for a claim, and one claim may fetch up to 20.
That is the option the docs give for many short tasks; it is printed for comparison,
and the target applies to the default row.

In every mode process start-up (interpreter, imports, connecting) is kept out of the
rate, fairly for both sides: the queue table is locked (PostgreSQL: ``LOCK TABLE ... IN
ACCESS EXCLUSIVE MODE``; SQLite: a ``BEGIN IMMEDIATE`` transaction) before the
consumers start, and released once every consumer process waits on that lock
(PostgreSQL: each process has a connection in ``pg_stat_activity`` waiting on a lock;
SQLite cannot show who waits, so each process has the database file open, plus one
second). The clock starts at the release (prefilled) or before the batch is stored
(idle-first) and stops when the queue is drained, polled every 20 ms with one query per
side: what is left in pgqueuer's queue table (a job leaves it when done), and what
aana's ``task_counts`` (kept by the database; ``count_by_endpoint`` and the dashboard read it)
says is not completed (the plain sqlite3 loop works on aana's table: counted alike). A
``count(*)`` of aana's unfinished tasks would read every task row, done ones included,
every 20 ms. Start-up (launch until every process waits) is printed for each run, apart
from the rate. SQLite's sleeping busy handler may wake a waiter up to
100 ms after the release, the same for both sides.

The single ``defer`` is timed beside the same INSERT on one plain psycopg connection
(alternating rounds of 500). The idle latency (defer -> handler start, through ``aana
worker``) is timed beside a plain driver loop on the same database, woken as aana's
worker is (PostgreSQL: ``LISTEN`` on a second connection; SQLite: ``PRAGMA
data_version`` every millisecond), which claims one task and stamps its start: what any
queue on this machine pays for the two round trips after an idle pause.

Each pair alternates in one run, ROUNDS times, the first side swapping every round; every
run is printed. Summaries give the median and the best of each side; the verdict uses
the ratio of the medians (the best ratio is printed too). Exits 1 if a target is missed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
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
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
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
WARM_UP = PROCESSES * 10
SECTIONS = ("pgqueuer", "sqlite", "loops", "defer", "latency", "memory")
# Set from the command line in main().
TASKS = 5000
ROUNDS = 5
LOGS = Path(tempfile.gettempdir())


# --- printing and verdicts ---

MISSED: list[str] = []


def verdict(name: str, ok: bool, target: str) -> str:
    """ " target ...: ok" or " target ...: MISSED" (remembered for the exit code)."""
    if not ok:
        MISSED.append(name)
    return f"  target {target}: {'ok' if ok else 'MISSED'}"


def report(name: str, value: float, unit: str, target: str = "", ok: bool = True) -> None:
    """One result line; with a target, its verdict."""
    line = f"{name:<58} {value:>9.1f} {unit}"
    print(line + (verdict(name, ok, target) if target else ""), flush=True)


def compare(
    title: str, names: tuple[str, str], rates: tuple[list[float], list[float]], target: float | None
) -> None:
    """Median and best of both sides and their ratios; the verdict uses the medians."""
    print(f"{title}, {len(rates[0])} round(s) each:", flush=True)
    for name, values in zip(names, rates, strict=True):
        print(
            f"  {name:<44} median {statistics.median(values):>9.1f}  "
            f"best {max(values):>9.1f} tasks/s",
            flush=True,
        )
    ours, theirs = rates
    median = statistics.median(ours) / statistics.median(theirs)
    line = (
        f"  {'ratio (first / second)':<44} median {median:>8.2f}x  "
        f"best {max(ours) / max(theirs):>8.2f}x"
    )
    if target is not None:
        line += verdict(title, median >= target, f">= {target:.1f}x (median)")
    print(line, flush=True)


def alternate(rounds: int, first: Callable[[], float], second: Callable[[], float]):  # type: ignore[no-untyped-def]
    """Run both sides ``rounds`` times, the one going first swapping every round."""
    firsts, seconds = [], []
    for round_ in range(rounds):
        if round_ % 2 == 0:
            firsts.append(first())
            seconds.append(second())
        else:
            seconds.append(second())
            firsts.append(first())
    return firsts, seconds


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
    with psycopg.connect(dbname="postgres", autocommit=True, **PG) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {pg_name(db)} WITH (FORCE)")


def new_sqlite_database(folder: Path) -> DbSettings:
    # A long busy timeout: workers wait on the start gate's write lock (see the docstring).
    db = DbSettings(
        datastore_config={"path": str(folder / f"{uuid.uuid4().hex}.db")}, connection_timeout=60
    )
    run_alembic_migrations(Settings(db_config=db))
    return db


def on_fresh_pg_database(measure):  # type: ignore[no-untyped-def]
    db = new_pg_database()
    try:
        return measure(db)
    finally:
        drop_pg_database(db)


def on_fresh_sqlite_database(measure):  # type: ignore[no-untyped-def]
    with tempfile.TemporaryDirectory() as folder:
        db = new_sqlite_database(Path(folder))
        try:
            return measure(db)
        finally:
            db.get_engine().dispose()


def is_pg(db: DbSettings) -> bool:
    return db.datastore_type.value == "postgresql"


def pg_name(db: DbSettings) -> str:
    return str(db.datastore_config["database"])  # type: ignore[typeddict-item]


def sqlite_path(db: DbSettings) -> str:
    return str(db.datastore_config["path"])  # type: ignore[typeddict-item]


def pg_dsn(db: DbSettings) -> str:
    return f"host={PG['host']} port={PG['port']} user={PG['user']} dbname={pg_name(db)}"


def plain_connection(db: DbSettings) -> Any:
    """An autocommit driver connection; ``execute(sql).fetchone()`` on both backends."""
    if is_pg(db):
        return psycopg.connect(pg_dsn(db), autocommit=True)
    return sqlite3.connect(sqlite_path(db), timeout=60, isolation_level=None)


def scalar(connection: Any, query: str) -> int:
    return int(connection.execute(query).fetchone()[0])


def use(db: DbSettings) -> AanaSDK:
    settings.db_config = db
    return AanaSDK()


def wait_until(condition, timeout: float = 300.0, step: float = 0.02, what: str = "") -> float:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"benchmark step did not finish: {what} (logs in {LOGS})")
        time.sleep(step)
    return time.perf_counter()


# --- the start gate: consumers start, then wait on a lock of the queue table ---


def close_gate(db: DbSettings, table: str) -> Any:
    """Lock ``table`` against every writer until ``open_gate``."""
    if is_pg(db):
        gate = psycopg.connect(pg_dsn(db))
        gate.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")
        return gate
    gate = sqlite3.connect(sqlite_path(db), isolation_level=None)
    gate.execute("BEGIN IMMEDIATE")
    return gate


def open_gate(gate: Any) -> None:
    gate.commit() if isinstance(gate, psycopg.Connection) else gate.execute("COMMIT")
    gate.close()


def all_waiting(db: DbSettings, monitor: Any, pids: list[int]) -> bool:
    """Whether every process in ``pids`` is up and waiting on the gate."""
    try:
        processes = [psutil.Process(pid) for pid in pids]
        if is_pg(db):
            waiting = {
                row[0]
                for row in monitor.execute(
                    "SELECT client_port FROM pg_stat_activity "
                    "WHERE datname = current_database() AND wait_event_type = 'Lock'"
                )
            }
            return all(
                any(c.laddr.port in waiting for c in p.net_connections(kind="tcp"))
                for p in processes
            )
        path = os.path.realpath(sqlite_path(db))
        return all(any(f.path == path for f in p.open_files()) for p in processes)
    except psutil.NoSuchProcess as error:
        raise RuntimeError(f"a consumer process exited (logs in {LOGS})") from error


def wait_for_consumers(db: DbSettings, monitor: Any, pids: Callable[[], list[int]]) -> None:
    wait_until(
        lambda: len(pids()) == PROCESSES and all_waiting(db, monitor, pids()),
        timeout=120,
        step=0.05,
        what="consumers waiting on the gate",
    )
    if not is_pg(db):
        time.sleep(1.0)  # SQLite: from the file being open to the first claim


@dataclasses.dataclass
class Side:
    """One side of a throughput comparison: how to store tasks, start, count and stop."""

    name: str
    table: str
    enqueue: Callable[[DbSettings, int], None]
    start: Callable[[DbSettings], Any]
    pids: Callable[[Any], list[int]]
    remaining: str  # SQL: tasks not yet done
    stop: Callable[[Any], None]
    check: Callable[[DbSettings], str] = lambda db: ""


def throughput(side: Side, db: DbSettings, mode: str, tasks: int) -> float:
    """Tasks per second of ``side`` on ``db`` in ``mode``.

    ``mode``: "prefilled", "prefilled-analysed" or "idle-first" (see the module docstring).
    """
    monitor = plain_connection(db)
    if mode != "idle-first":
        side.enqueue(db, tasks)
    if mode == "prefilled-analysed":
        monitor.execute(f"ANALYZE {side.table}")
    gate = close_gate(db, side.table)
    launched = time.perf_counter()
    consumers = side.start(db)
    try:
        wait_for_consumers(db, monitor, lambda: side.pids(consumers))
        start_up = time.perf_counter() - launched
        if mode != "idle-first":
            start = time.perf_counter()
            open_gate(gate)
        else:
            open_gate(gate)
            side.enqueue(db, WARM_UP)
            wait_until(lambda: scalar(monitor, side.remaining) == 0, what="warm-up")
            time.sleep(1.0)
            start = time.perf_counter()
            side.enqueue(db, tasks)
        end = wait_until(lambda: scalar(monitor, side.remaining) == 0, what=f"{side.name} drain")
    finally:
        side.stop(consumers)
        monitor.close()
    rate = tasks / (end - start)
    print(
        f"  {mode} {side.name}: {rate:.0f} tasks/s (start-up {start_up:.1f} s){side.check(db)}",
        flush=True,
    )
    return rate


# --- aana's worker (the real CLI, as deployed) ---


def log_file(name: str) -> Any:
    return (LOGS / f"{name}.log").open("a")


def start_workers(db: DbSettings, *extra: str) -> subprocess.Popen[bytes]:
    config = {
        "datastore_type": str(db.datastore_type.value),
        "datastore_config": dict(db.datastore_config),
        "connection_timeout": db.connection_timeout,
    }
    env = {
        **os.environ,
        "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'benchmarks'}",
        "DB_CONFIG": json.dumps(config),
    }
    command = [sys.executable, "-m", "aana.cli", "worker", "bench_app:app", *extra]
    with log_file("aana_worker") as log:
        return subprocess.Popen(
            command, cwd=ROOT / "benchmarks", env=env, stdout=log, stderr=subprocess.STDOUT
        )


def stop_workers(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM, as an operator stops it; a tree still alive after 60 s is killed, and said."""
    tree = [psutil.Process(process.pid), *psutil.Process(process.pid).children(recursive=True)]
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(60)
    except subprocess.TimeoutExpired:
        alive = [p.pid for p in tree if p.is_running()]
        for stuck in tree:
            with contextlib.suppress(psutil.NoSuchProcess):
                stuck.kill()
        process.wait(10)
        message = f"aana worker: processes {alive} still running 60 s after SIGTERM, killed"
        print(f"  WARNING {message} (logs in {LOGS})", flush=True)
        MISSED.append(message)


def worker_pids(process: subprocess.Popen[bytes]) -> list[int]:
    """The worker processes of ``aana worker --processes N`` (its supervisor's children)."""
    if process.poll() is not None:
        raise RuntimeError(f"aana worker exited with code {process.returncode} (logs in {LOGS})")
    children = psutil.Process(process.pid).children()
    # The worker processes (``python -m aana.tasks.supervisor NAME ...``), nothing else.
    return [child.pid for child in children if "aana.tasks.supervisor" in child.cmdline()]


def exactly_once(db: DbSettings) -> tuple[bool, list[int]]:
    """Every task completed, each claimed exactly once."""
    use(db)
    with get_session() as session:
        repository = TaskRepository(session)
        counts = repository.count()
        tasks = repository.get_tasks(limit=counts["total"] + 1)
        retries = sorted({task.num_retries for task in tasks})
    db.get_engine().dispose()
    return counts["completed"] == counts["total"] and retries == [1], retries


EXACTLY_ONCE: list[bool] = []


def check_exactly_once(db: DbSettings) -> str:
    once, retries = exactly_once(db)
    EXACTLY_ONCE.append(once)
    return f", exactly once: {once} (claims per task: {retries})"


AANA_REMAINING = "SELECT coalesce(sum(tasks), 0) FROM task_counts WHERE status <> 'completed'"
"""Tasks not completed, as the database counts them (both backends)."""


def aana_defer(db: DbSettings, count: int) -> None:
    use(db).defer_many("noop", [{"n": n} for n in range(count)])


AANA_OPTIONS = ("--processes", str(PROCESSES), "--concurrency", "10", "--max-active-per-user", "0")
"""The worker's options in the throughput rows (pgqueuer has no per-user limit)."""

AANA = Side(
    name="aana worker",
    table="tasks",
    enqueue=aana_defer,
    start=lambda db: start_workers(db, *AANA_OPTIONS),
    pids=worker_pids,
    remaining=AANA_REMAINING,
    stop=stop_workers,
    check=check_exactly_once,
)

PREFETCH = 10
"""Tasks each process claims ahead of its handler threads, in the ``--prefetch`` row."""

AANA_PREFETCHING = dataclasses.replace(
    AANA,
    name=f"aana worker --prefetch {PREFETCH}",
    start=lambda db: start_workers(db, *AANA_OPTIONS, "--prefetch", str(PREFETCH)),
)


# --- pgqueuer (asyncpg, pgqueuer.run), same machine, same PostgreSQL ---


PGQUEUER_LOOP = asyncio.new_event_loop()


def pgqueuer_connect(db: DbSettings) -> Any:
    """An asyncpg connection of this process, on PGQUEUER_LOOP."""
    import asyncpg

    return PGQUEUER_LOOP.run_until_complete(
        asyncpg.connect(host=PG["host"], port=PG["port"], user=PG["user"], database=pg_name(db))
    )


def pgqueuer_enqueue(queries: Any, count: int) -> None:
    """``count`` jobs in one statement, as aana's ``defer_many`` stores them in one call."""
    PGQUEUER_LOOP.run_until_complete(queries.enqueue(["noop"] * count, [None] * count, [0] * count))


def start_pgqueuer(db: DbSettings) -> list[subprocess.Popen[bytes]]:
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT / "benchmarks"),
        "PGHOST": PG["host"],
        "PGPORT": str(PG["port"]),
        "PGUSER": PG["user"],
        "PGDATABASE": pg_name(db),
    }
    command = [sys.executable, "bench_pgqueuer_app.py"]
    with log_file("pgqueuer") as log:
        return [
            subprocess.Popen(
                command, cwd=ROOT / "benchmarks", env=env, stdout=log, stderr=subprocess.STDOUT
            )
            for _ in range(PROCESSES)
        ]


def stop_pgqueuer(consumers: list[subprocess.Popen[bytes]]) -> None:
    for consumer in consumers:
        consumer.send_signal(signal.SIGTERM)
    for consumer in consumers:
        consumer.wait(60)


def pgqueuer_pids(consumers: list[subprocess.Popen[bytes]]) -> list[int]:
    exited = [c.returncode for c in consumers if c.poll() is not None]
    if exited:
        raise RuntimeError(f"pgqueuer consumer exited with code {exited[0]} (logs in {LOGS})")
    return [consumer.pid for consumer in consumers]


PGQUEUER = Side(
    name="pgqueuer",
    table="pgqueuer",
    enqueue=lambda db, count: None,  # replaced per database in pgqueuer_run
    start=start_pgqueuer,
    pids=pgqueuer_pids,
    # A job leaves the table when its success is logged; a failed job stays.
    remaining="SELECT count(*) FROM pgqueuer",
    stop=stop_pgqueuer,
)


def pgqueuer_run(mode: str) -> float:
    def measure(db: DbSettings) -> float:
        # One connection for the benchmark's enqueues, opened before any clock starts.
        from pgqueuer import AsyncpgDriver, Queries

        connection = pgqueuer_connect(db)
        queries = Queries(AsyncpgDriver(connection))
        try:
            PGQUEUER_LOOP.run_until_complete(queries.install())
            side = dataclasses.replace(
                PGQUEUER, enqueue=lambda db, count: pgqueuer_enqueue(queries, count)
            )
            return throughput(side, db, mode, TASKS)
        finally:
            PGQUEUER_LOOP.run_until_complete(connection.close())

    return on_fresh_pg_database(measure)


def bench_pgqueuer() -> None:
    label = f"{PROCESSES} processes, {TASKS} no-op tasks"
    with psycopg.connect(dbname="postgres", autocommit=True, **PG) as server:
        autovacuum = server.execute("SHOW autovacuum").fetchone()
    print(f"PostgreSQL autovacuum: {autovacuum[0] if autovacuum else 'unknown'}", flush=True)
    rows = [
        (AANA, mode, "aana worker (concurrency 10)")
        for mode in ("prefilled", "prefilled-analysed", "idle-first")
    ]
    # The same backlog with the option for many short tasks (see the docstring).
    rows.append(
        (AANA_PREFETCHING, "prefilled", f"aana worker (concurrency 10, prefetch {PREFETCH})")
    )
    for side, mode, name in rows:
        ours, theirs = alternate(
            ROUNDS,
            lambda side=side, mode=mode: on_fresh_pg_database(
                lambda db: throughput(side, db, mode, TASKS)
            ),
            lambda mode=mode: pgqueuer_run(mode),
        )
        compare(
            f"PostgreSQL, {mode}, {label}",
            (name, "pgqueuer (asyncpg, batch 10)"),
            (ours, theirs),
            1.5 if side is AANA and mode == "prefilled" else None,
        )
    report_exactly_once("PostgreSQL")


def report_exactly_once(backend: str) -> None:
    name = f"{backend}: aana worker runs where every task ran exactly once"
    line = f"{name:<58} {sum(EXACTLY_ONCE):>5} of {len(EXACTLY_ONCE)}"
    print(line + verdict(name, all(EXACTLY_ONCE), "all"), flush=True)
    EXACTLY_ONCE.clear()


# --- SQLite: aana worker vs a plain sqlite3 loop ---


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


def _plain_sqlite_loop(path: str) -> None:
    connection = sqlite3.connect(path, timeout=60, isolation_level=None)
    connection.execute("PRAGMA synchronous=NORMAL")
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


def start_plain_sqlite(db: DbSettings) -> list[Any]:
    context = multiprocessing.get_context("spawn")
    processes = [
        context.Process(target=_plain_sqlite_loop, args=(sqlite_path(db),))
        for _ in range(PROCESSES)
    ]
    for process in processes:
        process.start()
    return processes


def join_all(processes: list[Any]) -> None:
    for process in processes:
        process.join(60)


PLAIN_SQLITE = Side(
    name="plain sqlite3 loop",
    table="tasks",
    enqueue=aana_defer,
    start=start_plain_sqlite,
    pids=lambda processes: [p.pid for p in processes if p.pid is not None],
    remaining=AANA_REMAINING,  # the same table and triggers as aana's side
    stop=join_all,
)


def bench_sqlite() -> None:
    label = f"{PROCESSES} processes, {TASKS} no-op tasks"
    ours, theirs = alternate(
        ROUNDS,
        lambda: on_fresh_sqlite_database(lambda db: throughput(AANA, db, "prefilled", TASKS)),
        lambda: on_fresh_sqlite_database(
            lambda db: throughput(PLAIN_SQLITE, db, "prefilled", TASKS)
        ),
    )
    compare(
        f"SQLite, prefilled, {label}",
        ("aana worker (concurrency 10)", "plain sqlite3 loop (BEGIN IMMEDIATE)"),
        (ours, theirs),
        1.0,
    )
    report_exactly_once("SQLite")


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


def loop_rate_pg(name: str, target, argument) -> float:  # type: ignore[no-untyped-def]
    """Tasks per second of a claim loop on a fresh database of TASKS tasks."""

    def measure(db: DbSettings) -> float:
        aana_defer(db, TASKS)
        rate = TASKS / run_loops(target, argument(db))
        with plain_connection(db) as connection:
            assert scalar(connection, AANA.remaining) == 0
        print(f"  {name}: {rate:.0f} tasks/s", flush=True)
        return rate

    return on_fresh_pg_database(measure)


def bench_loops() -> None:
    ours, theirs = alternate(
        ROUNDS,
        lambda: loop_rate_pg("repository loop", _repository_loop, DbSettings.model_dump_json),
        lambda: loop_rate_pg("plain psycopg loop", _plain_psycopg_loop, pg_dsn),
    )
    compare(
        f"PostgreSQL, claim loops, {PROCESSES} processes, {TASKS} prefilled tasks",
        ("repository (fetch 10 + update_status)", "plain psycopg (SKIP LOCKED)"),
        (ours, theirs),
        0.6,
    )


# --- defer throughput ---


PLAIN_DEFER = (
    "INSERT INTO tasks (id, endpoint, data, status, priority, progress, num_retries,"
    " user_id, scheduled_at, cancel_requested) VALUES (%s, 'noop', %s::jsonb, 'created',"
    " 0, 0, 0, NULL, statement_timestamp(), false)"
)
"""The baseline of a single defer: the same row, one autocommit INSERT on one plain
psycopg connection (the tasks table's trigger notifies the workers, as for aana)."""


def bench_defer(db: DbSettings) -> None:
    """Single ``defer`` against the plain psycopg INSERT, in alternating rounds of 500."""
    app = use(db)
    plain = plain_connection(db)
    rounds, per_round = 4, 500

    def ours() -> float:
        start = time.perf_counter()
        for n in range(per_round):
            app.defer("noop", {"n": n})
        return per_round / (time.perf_counter() - start)

    def theirs() -> float:
        start = time.perf_counter()
        for n in range(per_round):
            plain.execute(PLAIN_DEFER, (uuid.uuid4(), json.dumps({"n": n})))
        return per_round / (time.perf_counter() - start)

    try:
        rates = alternate(rounds, ours, theirs)
    finally:
        plain.close()
    rate = statistics.median(rates[0])
    name = f"PostgreSQL: single defer ({rounds} x {per_round} calls), median"
    report(name, rate, "tasks/s", ">= 2000/s", rate >= 2000)
    compare("PostgreSQL: single defer", ("aana defer", "plain psycopg INSERT"), rates, None)
    batch = [{"n": n} for n in range(50_000)]
    start = time.perf_counter()
    for offset in range(0, len(batch), 5000):
        app.defer_many("noop", batch[offset : offset + 5000])
    rate = len(batch) / (time.perf_counter() - start)
    report(
        "PostgreSQL: defer_many (5,000 per call, 10 calls)",
        rate,
        "tasks/s",
        ">= 50000/s",
        rate >= 50_000,
    )


# --- idle-worker latency, through `aana worker` ---


PLAIN_CLAIM_ONE = {
    "postgresql": (
        "UPDATE tasks SET status = 'running', assigned_at = clock_timestamp(),"
        " num_retries = num_retries + 1 WHERE id = (SELECT id FROM tasks"
        " WHERE status IN ('created', 'not_finished') AND scheduled_at <= clock_timestamp()"
        " ORDER BY priority DESC, scheduled_at, id LIMIT 1 FOR UPDATE SKIP LOCKED) RETURNING id"
    ),
    "sqlite": (
        f"UPDATE tasks SET status = 'running', assigned_at = {NOW_SQLITE},"
        " num_retries = num_retries + 1 WHERE id = (SELECT id FROM tasks"
        " WHERE likelihood(status IN ('created', 'not_finished'), 0.9)"
        f" AND scheduled_at <= {NOW_SQLITE} ORDER BY priority DESC, scheduled_at, id LIMIT 1)"
        " RETURNING id"
    ),
}
PLAIN_STAMP = {
    "postgresql": (
        "UPDATE tasks SET status = 'completed', completed_at = clock_timestamp(),"
        " result = %s::jsonb WHERE id = %s"
    ),
    "sqlite": (
        f"UPDATE tasks SET status = 'completed', completed_at = {NOW_SQLITE}, result = ?"
        " WHERE id = ?"
    ),
}


def _plain_latency_loop(backend: str, target: str) -> None:
    """The baseline of the idle latency: a plain driver loop woken as aana's worker is.

    On PostgreSQL it waits on a second connection's ``LISTEN`` for the tasks table's
    notification; on SQLite it reads ``PRAGMA data_version`` every millisecond. Woken, it
    claims one task at a time, stamps the time it "starts" it as the task's result (as
    the ``stamp`` handler does) and marks it completed.
    """
    claim, stamp = PLAIN_CLAIM_ONE[backend], PLAIN_STAMP[backend]
    if backend == "postgresql":
        work: Any = psycopg.connect(target, autocommit=True)
        listen = psycopg.connect(target, autocommit=True)
        listen.execute("LISTEN aana_tasks")

        def wait() -> None:
            for _ in listen.notifies(stop_after=1):
                pass

        def claim_one() -> Any:
            row = work.execute(claim).fetchone()
            return None if row is None else row[0]

    else:
        work = sqlite3.connect(target, timeout=60, isolation_level=None)
        watch = sqlite3.connect(target, isolation_level=None)
        version = [watch.execute("PRAGMA data_version").fetchone()[0]]

        def wait() -> None:
            while True:
                time.sleep(0.001)
                now = watch.execute("PRAGMA data_version").fetchone()[0]
                if now != version[0]:
                    version[0] = now
                    return

        def claim_one() -> Any:
            work.execute("BEGIN IMMEDIATE")
            row = work.execute(claim).fetchone()
            work.execute("COMMIT")
            return None if row is None else row[0]

    while True:
        while (task_id := claim_one()) is not None:
            work.execute(stamp, (json.dumps(time.time()), task_id))
        wait()


def start_plain_latency(db: DbSettings) -> Any:
    backend = "postgresql" if is_pg(db) else "sqlite"
    target = pg_dsn(db) if is_pg(db) else sqlite_path(db)
    context = multiprocessing.get_context("spawn")
    process = context.Process(target=_plain_latency_loop, args=(backend, target), daemon=True)
    process.start()
    return process


def idle_latencies(app: AanaSDK, db: DbSettings, count: int) -> list[float]:
    """Defer -> handler start of ``count`` tasks, each deferred to an idle consumer (ms)."""
    monitor = plain_connection(db)
    status = "SELECT count(*) FROM tasks WHERE status <> 'completed'"
    latencies = []
    try:
        app.defer_many("stamp", [{} for _ in range(3)])
        wait_until(lambda: scalar(monitor, status) == 0, timeout=120, what="latency warm-up")
        for _ in range(count):
            time.sleep(0.05)  # the consumer is idle, waiting for a wake-up
            before = time.time()
            task_id = app.defer("stamp", {})
            wait_until(lambda: scalar(monitor, status) == 0, timeout=30, step=0.002)
            latencies.append((app.get_task(task_id).result - before) * 1000)
    finally:
        monitor.close()
    return latencies


def bench_latency(db: DbSettings, per_user_limit: bool) -> None:
    """Defer -> handler start of one idle worker process, over 100 tasks.

    Without the per-user limit, the same is measured on the plain driver loop of
    ``_plain_latency_loop`` right after, on the same database.
    """
    app = use(db)
    limit = [] if per_user_limit else ["--max-active-per-user", "0"]
    worker = start_workers(db, "--processes", "1", "--concurrency", "1", *limit)
    try:
        latencies = idle_latencies(app, db, 100)
    finally:
        stop_workers(worker)
    backend, target = ("PostgreSQL", 3.0) if is_pg(db) else ("SQLite", 5.0)
    label = "per-user limit 25" if per_user_limit else "no per-user limit"
    median = statistics.median(latencies)
    name = f"{backend}: idle worker ({label}), defer -> handler start"
    report(f"{name}, median", median, "ms", f"<= {target:.0f} ms", median <= target)
    report(f"{name}, p95", statistics.quantiles(latencies, n=20)[18], "ms")
    if per_user_limit:
        return
    plain = start_plain_latency(db)
    try:
        baseline = idle_latencies(app, db, 100)
    finally:
        plain.terminate()
        plain.join(10)
    driver = "psycopg LISTEN" if is_pg(db) else "sqlite3 data_version"
    name = f"{backend}: baseline, plain {driver} loop, defer -> start"
    report(f"{name}, median", statistics.median(baseline), "ms")
    report(f"{name}, p95", statistics.quantiles(baseline, n=20)[18], "ms")
    ratio = median / statistics.median(baseline)
    report(f"{backend}: idle worker (no per-user limit) / baseline, medians", ratio, "x")


# --- idle memory ---


def bench_memory(db: DbSettings) -> None:
    """Memory of an idle ``aana worker --processes 4``: the whole process tree.

    The tree is the supervisor, its workers and multiprocessing's resource tracker. The
    sum of RSS (the target) counts shared pages once per process; the sum of USS counts
    only the pages each process has to itself.
    """
    app = use(db)
    worker = start_workers(db, "--processes", str(PROCESSES))
    monitor = plain_connection(db)
    try:
        app.defer_many("noop", [{} for _ in range(WARM_UP)])
        wait_until(lambda: scalar(monitor, AANA.remaining) == 0, timeout=120, what="warm-up")
        wait_until(lambda: len(worker_pids(worker)) == PROCESSES, what="worker processes")
        time.sleep(2.0)
        tree = [psutil.Process(worker.pid), *psutil.Process(worker.pid).children(recursive=True)]
        rss = sum(p.memory_info().rss for p in tree) / 2**20
        uss = sum(p.memory_full_info().uss for p in tree) / 2**20
    finally:
        stop_workers(worker)
        monitor.close()
    name = f"PostgreSQL: idle aana worker --processes {PROCESSES} ({len(tree)} processes)"
    report(f"{name}, RSS", rss, "MB", "<= 250 MB", rss <= 250)
    report(f"{name}, USS", uss, "MB")
    for label, imports in FLOORS.items():
        report(f"floor: {PROCESSES} x import {label} + 1 bare, RSS", floor_rss(imports), "MB")


FLOORS = {
    "psycopg, SQLAlchemy Core": "import asyncio, psycopg, sqlalchemy",
    "the same + pydantic-settings + SQLAlchemy ORM": (
        "import asyncio, psycopg, pydantic_settings, sqlalchemy, sqlalchemy.orm"
    ),
}
"""What a worker process cannot do without, whatever its own code: the driver, and the
engine and its pool. Then the settings and the ORM: a worker process of ``aana worker
--processes N`` loads neither (it is handed its options and database, and its queue
statements are Core), but an application's module loads them as soon as it imports
``Settings``, an entity or a repository."""


def floor_rss(imports: str) -> float:
    """Sum of RSS of PROCESSES interpreters that ran only ``imports``, and one bare one.

    The bare interpreter stands for the supervisor. The sum is the least an idle
    ``aana worker --processes PROCESSES`` could weigh if each worker loaded these
    libraries and nothing else.
    """
    wait = "import sys; sys.stdout.write('ready\\n'); sys.stdout.flush(); sys.stdin.read()"
    codes = [f"{imports}; {wait}"] * PROCESSES + [wait]
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )
        for code in codes
    ]
    try:
        for process in processes:
            assert process.stdout is not None
            process.stdout.readline()
        return sum(psutil.Process(p.pid).memory_info().rss for p in processes) / 2**20
    finally:
        for process in processes:
            assert process.stdin is not None
            process.stdin.close()
            process.wait(10)


def versions() -> str:
    from importlib.metadata import PackageNotFoundError, version

    shown = []
    for package in ("pgqueuer", "asyncpg", "psycopg", "SQLAlchemy"):
        try:
            shown.append(f"{package} {version(package)}")
        except PackageNotFoundError:
            shown.append(f"{package} (not installed)")
    return ", ".join(shown)


def main() -> int:
    global TASKS, ROUNDS, LOGS
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=TASKS, help="tasks per throughput run")
    parser.add_argument("--rounds", type=int, default=ROUNDS, help="runs of each side")
    parser.add_argument(
        "--only", default=",".join(SECTIONS), help=f"comma list of: {','.join(SECTIONS)}"
    )
    arguments = parser.parse_args()
    sections = [s.strip() for s in arguments.only.split(",") if s.strip()]
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown sections: {', '.join(sorted(unknown))}")
    TASKS, ROUNDS = arguments.tasks, arguments.rounds
    LOGS = Path(tempfile.mkdtemp(prefix="bench_queue_"))
    print(f"{os.cpu_count()} CPUs; {versions()}", flush=True)
    print(
        f"{PROCESSES} processes; {TASKS} tasks; {ROUNDS} rounds; consumer logs in {LOGS}",
        flush=True,
    )
    if "pgqueuer" in sections:
        bench_pgqueuer()
    if "sqlite" in sections:
        bench_sqlite()
    if "loops" in sections:
        bench_loops()
    if "defer" in sections:
        on_fresh_pg_database(bench_defer)
    if "latency" in sections:
        for fresh in (on_fresh_pg_database, on_fresh_sqlite_database):
            for per_user_limit in (False, True):
                fresh(lambda db, limit=per_user_limit: bench_latency(db, limit))
    if "memory" in sections:
        on_fresh_pg_database(bench_memory)
    if MISSED:
        print(f"MISSED: {len(MISSED)}: {'; '.join(MISSED)}", flush=True)
    return 1 if MISSED else 0


if __name__ == "__main__":
    sys.exit(main())
