"""Scheduled tasks benchmark: claims with many future tasks present, and start latency.

Run from the repository root (PostgreSQL at 127.0.0.1:5432, user postgres):

    PYTHONPATH=. python benchmarks/bench_schedule.py [--tasks 5000] [--future 50000]
        [--rounds 3] [--latency-tasks 30] [--backends postgresql,sqlite]

Rows:

- **claim throughput with future tasks**, per backend: an in-process burst worker
  (``concurrency`` 10, no per-user limit) drains ``--tasks`` due no-op tasks, once on a
  queue holding only them and once with ``--future`` more tasks scheduled an hour ahead.
  The two alternate, ``--rounds`` times, each on a fresh database; the verdict compares
  the medians (target: with / without >= 0.8).
- **scheduled-task start latency** (PostgreSQL): an idle worker; one task at a time is
  deferred due 200 ms ahead (``schedule_at`` from the database clock); latency is the
  handler's start (wall clock) minus the due time. The database runs on this machine, so
  both clocks are the same one. Also checks that no task was claimed before its time
  (``assigned_at >= scheduled_at``, both by the database clock). Target: median <= 50 ms.

Exits 1 if a target is missed.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy import select

from aana.configs.db import DbSettings
from aana.configs.settings import Settings
from aana.sdk import AanaSDK
from aana.storage.dialects import utcnow
from aana.storage.op import run_alembic_migrations
from aana.tasks import Worker, WorkerOptions

PG = {"host": "127.0.0.1", "port": 5432, "user": "postgres", "password": ""}


def fresh_database(backend: str, folder: Path) -> tuple[DbSettings, Callable[[], None]]:
    """A migrated database and the function that removes it."""
    if backend == "sqlite":
        db = DbSettings(datastore_config={"path": str(folder / f"{uuid.uuid4().hex}.db")})
        run_alembic_migrations(Settings(db_config=db))
        return db, db.get_engine().dispose
    name = f"aana_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(dbname="postgres", autocommit=True, **PG) as admin:  # type: ignore[arg-type]
        admin.execute(f"CREATE DATABASE {name}")
    db = DbSettings(datastore_type="postgresql", datastore_config={**PG, "database": name})  # type: ignore[typeddict-item]
    run_alembic_migrations(Settings(db_config=db))

    def drop() -> None:
        db.get_engine().dispose()
        with psycopg.connect(dbname="postgres", autocommit=True, **PG) as admin:  # type: ignore[arg-type]
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    return db, drop


def app_on(db: DbSettings) -> AanaSDK:
    app = AanaSDK(name="bench-schedule")
    app.settings.db_config = db

    @app.task("noop")
    def noop(data: Any) -> None:
        return None

    return app


def drain_rate(backend: str, tasks: int, future: int, folder: Path) -> float:
    """Tasks per second an in-process burst worker claims and runs."""
    db, remove = fresh_database(backend, folder)
    try:
        app = app_on(db)
        if future:
            for start in range(0, future, 10_000):
                count = min(10_000, future - start)
                app.defer_many("noop", [{} for _ in range(count)], schedule_in=3600)
        app.defer_many("noop", [{} for _ in range(tasks)])
        options = WorkerOptions(
            concurrency=10, burst=True, poll_interval=0.05, maximum_active_tasks_per_user=None
        )
        worker = Worker(app, options)
        began = time.perf_counter()
        worker.run()
        elapsed = time.perf_counter() - began
        if worker.processed != tasks:
            raise SystemExit(f"{backend}: ran {worker.processed} tasks, expected {tasks}")
        return tasks / elapsed
    finally:
        remove()


def claim_rows(args: argparse.Namespace, folder: Path) -> bool:
    met = True
    for backend in args.backends.split(","):
        without: list[float] = []
        with_future: list[float] = []
        for round_number in range(args.rounds):
            pair = [(without, 0), (with_future, args.future)]
            for results, future in pair if round_number % 2 == 0 else reversed(pair):
                rate = drain_rate(backend, args.tasks, future, folder)
                results.append(rate)
                print(f"  {backend}: {args.tasks} due tasks, {future} future: {rate:.0f} tasks/s")
        ratio = statistics.median(with_future) / statistics.median(without)
        verdict = "yes" if ratio >= 0.8 else "NO"
        met &= ratio >= 0.8
        print(
            f"{backend}: claim throughput, median of {args.rounds}: "
            f"{statistics.median(without):.0f} tasks/s without, "
            f"{statistics.median(with_future):.0f} with {args.future} future tasks; "
            f"ratio {ratio:.2f} x (target >= 0.8: {verdict})"
        )
    return met


def latency_row(args: argparse.Namespace, folder: Path) -> bool:
    db, remove = fresh_database("postgresql", folder)
    try:
        app = app_on(db)
        started: dict[str, float] = {}
        arrived = threading.Event()

        @app.task("stamp")
        def stamp(data: Any, context: Any) -> None:
            started[context.task_id] = time.time()
            arrived.set()

        worker = Worker(app, WorkerOptions(poll_interval=1.0, maximum_active_tasks_per_user=None))
        thread = threading.Thread(target=worker.run, daemon=True)
        thread.start()
        engine = db.get_engine()
        latencies = []
        early = 0
        try:
            for _ in range(args.latency_tasks):
                arrived.clear()
                with engine.connect() as connection:
                    now = connection.execute(select(utcnow())).scalar_one()
                due = now + timedelta(milliseconds=200)
                task_id = app.defer("stamp", {}, schedule_at=due)
                if not arrived.wait(10):
                    raise SystemExit("a scheduled task did not start within 10 s")
                latencies.append((started[task_id] - due.timestamp()) * 1000)
                task = app.get_task(task_id)
                early += task.assigned_at < task.scheduled_at
        finally:
            worker.stop(grace=1)
            thread.join(10)
        median = statistics.median(latencies)
        verdict = "yes" if median <= 50 and not early else "NO"
        print(
            f"PostgreSQL: idle worker, scheduled task due -> handler start, median of "
            f"{len(latencies)}: {median:.1f} ms (max {max(latencies):.1f} ms); claimed "
            f"early: {early} (target median <= 50 ms, none early: {verdict})"
        )
        return verdict == "yes"
    finally:
        remove()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=5000)
    parser.add_argument("--future", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--latency-tasks", type=int, default=30)
    parser.add_argument("--backends", default="postgresql,sqlite", help="of the claim rows")
    args = parser.parse_args()
    print(f"{os.cpu_count()} CPUs; {args.tasks} due tasks; {args.future} future tasks")
    with tempfile.TemporaryDirectory() as folder:
        met = claim_rows(args, Path(folder))
        met &= latency_row(args, Path(folder))
    sys.exit(0 if met else 1)


if __name__ == "__main__":
    main()
