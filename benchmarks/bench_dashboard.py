"""Dashboard queries on a big tasks table, with and without migrations 0005 and 0006.

Run from the repository root (PostgreSQL at 127.0.0.1:5432, user postgres):

    PYTHONPATH=. python benchmarks/bench_dashboard.py [--tasks 1000000] [--repeat 15]
        [--updates 5000] [--backends postgresql,sqlite] [--explain]

Fills a fresh database with ``--tasks`` tasks (ten endpoints; 90 % completed over the
last 30 days, about 1 % of them in the last hour; 5 % failed; 4 % waiting; a few running),
then times each query the dashboard's main page runs (the median of ``--repeat`` runs).
The baseline is the same process and data without what migrations 0005 and 0006 add:
the two indexes dropped (and the index on status alone, which 0007 dropped, built
again), and the counts taken by counting ``tasks`` instead of reading ``task_counts``.
Prints milliseconds and the ratio baseline / ours. The counts are timed twice:
compacted (one row per endpoint and status, as a worker leaves them), and with the rows
of ``--updates`` single-task status changes not yet compacted (PostgreSQL; as they are
when no worker or dashboard has folded them). ``--explain`` prints PostgreSQL's
plans (EXPLAIN ANALYZE). Target: each query under 20 ms with 1,000,000 tasks.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench_schedule import fresh_database  # this folder is on the path of its scripts
from sqlalchemy import text
from sqlalchemy.orm import Session

from aana.configs.db import DbSettings
from aana.storage.models.task import Status
from aana.storage.repository.task import TaskRepository

PG = {"host": "127.0.0.1", "port": 5432, "user": "postgres", "password": ""}
INDEXES = {
    "ix_tasks_status_completed_at": "tasks (status, completed_at)",
    "ix_tasks_created_at": "tasks (created_at, id)",
}
BEFORE_0005_INDEX = "CREATE INDEX ix_tasks_status ON tasks (status)"

# One row per n: status by n % 100, times spread backwards from now.
PG_FILL = """
INSERT INTO tasks (id, endpoint, data, status, priority, progress, num_retries, result,
                   created_at, updated_at, scheduled_at, assigned_at, completed_at)
SELECT gen_random_uuid(), 'endpoint-' || (n % 10), '{"n": 1}'::jsonb, s.status, 0, 1, 1,
       CASE WHEN s.status = 'failed' THEN '{"error": "E", "message": "m"}'::jsonb END,
       now() - t.age - interval '1 minute', now() - t.age, now() - t.age - interval '1 minute',
       CASE WHEN s.status <> 'created' THEN now() - t.age - interval '30 seconds' END,
       CASE WHEN s.status IN ('completed', 'failed') THEN now() - t.age END
FROM generate_series(1, :tasks) AS n,
LATERAL (SELECT CASE WHEN n % 100 < 90 THEN 'completed' WHEN n % 100 < 95 THEN 'failed'
                     WHEN n % 100 < 99 OR n % 1000 <> 999 THEN 'created'
                     ELSE 'running' END AS status) AS s,
LATERAL (SELECT CASE WHEN n % 100 = 7 THEN (n % 3600) * interval '1 second'
                     ELSE interval '1 hour' + (n % 2592000) * interval '1 second' END AS age) AS t
"""

SQLITE_FILL = """
WITH RECURSIVE series(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM series WHERE n < :tasks),
rows AS (
  SELECT n,
         CASE WHEN n % 100 < 90 THEN 'completed' WHEN n % 100 < 95 THEN 'failed'
              WHEN n % 100 < 99 OR n % 1000 <> 999 THEN 'created' ELSE 'running' END AS status,
         CASE WHEN n % 100 = 7 THEN n % 3600 ELSE 3600 + n % 2592000 END AS age
  FROM series)
INSERT INTO tasks (id, endpoint, data, status, priority, progress, num_retries, result,
                   created_at, updated_at, scheduled_at, assigned_at, completed_at,
                   cancel_requested)
SELECT lower(hex(randomblob(16))), 'endpoint-' || (n % 10), '{"n": 1}', status, 0, 1, 1,
       CASE WHEN status = 'failed' THEN '{"error": "E", "message": "m"}' END,
       strftime('%Y-%m-%d %H:%M:%f000', 'now', -(age + 60) || ' seconds'),
       strftime('%Y-%m-%d %H:%M:%f000', 'now', -age || ' seconds'),
       strftime('%Y-%m-%d %H:%M:%f000', 'now', -(age + 60) || ' seconds'),
       CASE WHEN status <> 'created'
            THEN strftime('%Y-%m-%d %H:%M:%f000', 'now', -(age + 30) || ' seconds') END,
       CASE WHEN status IN ('completed', 'failed')
            THEN strftime('%Y-%m-%d %H:%M:%f000', 'now', -age || ' seconds') END,
       0
FROM rows
"""

QUERIES: dict[str, Callable[[TaskRepository], Any]] = {
    "counts per status": lambda r: r.count(),
    "counts per endpoint and status": lambda r: r.count_by_endpoint(),
    "running tasks (50)": lambda r: r.get_tasks(status=Status.RUNNING, limit=50),
    "latest failures (10)": lambda r: r.latest_ended(Status.FAILED, 10),
    "latest tasks (20)": lambda r: r.get_tasks(limit=20),
    "ended per minute, last hour": lambda r: r.finished_per_minute(3600),
}
COUNTS = ("counts per status", "counts per endpoint and status")

# The baseline's counts: what the repository ran before migration 0006.
COUNTED = {
    "counts per status": "SELECT status, count(*) FROM tasks GROUP BY status",
    "counts per endpoint and status": (
        "SELECT endpoint, status, count(*) FROM tasks GROUP BY endpoint, status"
    ),
}


def counted(name: str) -> Callable[[TaskRepository], Any]:
    return lambda r: r.session.execute(text(COUNTED[name])).all()


EXPLAINED = {
    "latest failures (10)": (
        "SELECT id FROM tasks WHERE status = 'failed' ORDER BY completed_at DESC, id LIMIT 10"
    ),
    "ended per minute, last hour": (
        "SELECT to_char(completed_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI'), status, "
        "count(*) FROM tasks WHERE status IN ('completed', 'failed') AND completed_at >= "
        "statement_timestamp() - interval '1 hour' GROUP BY 1, 2"
    ),
    "latest tasks (20)": "SELECT id FROM tasks ORDER BY created_at DESC, id LIMIT 20",
    "counts per endpoint and status": (
        "SELECT endpoint, status, sum(tasks) FROM task_counts GROUP BY endpoint, status "
        "HAVING sum(tasks) <> 0"
    ),
}


def fill(db: DbSettings, backend: str, tasks: int) -> float:
    started = time.perf_counter()
    engine = db.get_engine()
    with engine.begin() as connection:
        connection.execute(
            text(PG_FILL if backend == "postgresql" else SQLITE_FILL), {"tasks": tasks}
        )
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text("VACUUM ANALYZE tasks" if backend == "postgresql" else "ANALYZE"))
    return time.perf_counter() - started


Queries = dict[str, Callable[[TaskRepository], Any]]


def measure(db: DbSettings, repeat: int, queries: Queries) -> dict[str, float]:
    timings = {}
    with Session(db.get_engine()) as session:
        repository = TaskRepository(session)
        for name, query in queries.items():
            query(repository)  # warm the cache
            runs = []
            for _ in range(repeat):
                started = time.perf_counter()
                query(repository)
                runs.append(time.perf_counter() - started)
                session.expunge_all()
            timings[name] = statistics.median(runs) * 1000
    return timings


def change_statuses(db: DbSettings, updates: int) -> int:
    """``updates`` statements, each moving one waiting task to running; rows they added."""
    with db.get_engine().connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        before = connection.execute(text("SELECT count(*) FROM task_counts")).scalar_one()
        ids = connection.execute(
            text("SELECT id FROM tasks WHERE status = 'created' LIMIT :n"), {"n": updates}
        ).scalars()
        for task_id in list(ids):
            connection.execute(
                text("UPDATE tasks SET status = 'running' WHERE id = :id"), {"id": task_id}
            )
        return connection.execute(text("SELECT count(*) FROM task_counts")).scalar_one() - before


def set_indexes(db: DbSettings, present: bool) -> None:
    """Our indexes (``present``), or the baseline's: those before 0005 (with the index on
    status alone that 0007 dropped, since 0005's index on status and end time serves)."""
    with db.get_engine().begin() as connection:
        for name, target in INDEXES.items():
            statement = f"CREATE INDEX {name} ON {target}" if present else f"DROP INDEX {name}"
            connection.execute(text(statement))
        before_0005 = "DROP INDEX ix_tasks_status" if present else BEFORE_0005_INDEX
        connection.execute(text(before_0005))
        if db.datastore_type == "sqlite":
            connection.execute(text("ANALYZE"))


def explain(db: DbSettings) -> None:
    with db.get_engine().connect() as connection:
        for name, query in EXPLAINED.items():
            print(f"\n-- {name}\nEXPLAIN ANALYZE {query};")
            for (line,) in connection.execute(text(f"EXPLAIN ANALYZE {query}")):
                print(f"   {line}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--updates", type=int, default=5000)
    parser.add_argument("--backends", default="postgresql")
    parser.add_argument("--explain", action="store_true")
    args = parser.parse_args()
    missed = False
    with tempfile.TemporaryDirectory() as folder:
        for backend in args.backends.split(","):
            db, drop = fresh_database(backend, Path(folder))
            try:
                seconds = fill(db, backend, args.tasks)
                print(f"\n== {backend}: {args.tasks:,} tasks (filled in {seconds:.1f} s)")
                ours = measure(db, args.repeat, QUERIES)
                slow = {**QUERIES, **{name: counted(name) for name in COUNTS}}
                if backend == "postgresql" and args.updates:
                    rows = change_statuses(db, args.updates)
                    for name in COUNTS:
                        label = f"{name}, +{rows:,} rows"
                        ours[label] = measure(db, args.repeat, {name: QUERIES[name]})[name]
                        slow[label] = counted(name)
                set_indexes(db, present=False)
                baseline = measure(db, args.repeat, slow)
                set_indexes(db, present=True)
                print(f"{'query':44} {'ours ms':>8} {'without 0005/0006 ms':>21} {'ratio':>7}")
                for name, value in ours.items():
                    ratio = baseline[name] / value if value else float("inf")
                    flag = "" if value < 20 else "  (over 20 ms)"
                    missed = missed or value >= 20
                    print(f"{name:44} {value:8.2f} {baseline[name]:21.2f} {ratio:6.1f}x{flag}")
                if args.explain and backend == "postgresql":
                    explain(db)
            finally:
                drop()
    return 1 if missed else 0


if __name__ == "__main__":
    raise SystemExit(main())
