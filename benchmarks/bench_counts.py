"""The price of the task-count triggers (migration 0006) on the queue's own statements.

Run from the repository root (PostgreSQL at 127.0.0.1:5432, user postgres):

    PYTHONPATH=. python benchmarks/bench_counts.py [--rounds 9] [--backends postgresql,sqlite]

Two fresh migrated databases per backend, one with the triggers on ``tasks`` that keep
``task_counts`` (ours) and one with them dropped (the baseline), take the same
statements through the plain driver (psycopg in autocommit; sqlite3, one transaction per
statement), alternating, ``--rounds`` times; each round starts from an empty table.
Commits do not wait for the disk (PostgreSQL ``synchronous_commit = off``, SQLite WAL
with ``synchronous = NORMAL``): the triggers add no flush of their own, and the flush
latency of this machine's disk varies by more than what is measured.
Prints the median time of each statement and the ratio baseline / ours (1.0: free):

- **defer one**: an INSERT of one task (1,000 statements);
- **defer 5,000**: 5,000 tasks in one statement (psycopg ``COPY``; sqlite3 ``executemany``
  in one transaction);
- **claim 10**: an UPDATE changing the status of 10 tasks (300 statements), as a claim,
  a start or a settle does;
- **settle 10, 10 KB results**: the same, also storing a 10 KB JSON result in each task
  (PostgreSQL's transition tables copy the rows a statement changes, results included);
- **heartbeat 10**: an UPDATE of 10 tasks that changes no status (300 statements).

Informational: no target.
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
from bench_schedule import fresh_database  # this folder is on the path of its scripts

from aana.configs.db import DbSettings

PG = {"host": "127.0.0.1", "port": 5432, "user": "postgres", "password": ""}
TRIGGERS = ("inserted", "updated", "deleted", "truncated")
COLUMNS = "id, endpoint, data, status, priority, progress, num_retries"


class Plain:
    """One database through its plain driver."""

    def __init__(self, db: DbSettings, backend: str) -> None:
        self.backend = backend
        self.connection: Any
        if backend == "postgresql":
            name = db.datastore_config["database"]  # type: ignore[typeddict-item]
            self.connection = psycopg.connect(dbname=name, autocommit=True, **PG)  # type: ignore[arg-type]
            # Time the statements' work, not the disk's flush latency (the triggers add no
            # flush: their rows commit with the statement), which varies by milliseconds.
            self.connection.execute("SET synchronous_commit = off")
            self.mark = "%s"
        else:
            path = db.datastore_config["path"]  # type: ignore[typeddict-item]
            self.connection = sqlite3.connect(path, isolation_level=None)
            self.connection.execute("PRAGMA journal_mode=WAL")
            self.connection.execute("PRAGMA synchronous=NORMAL")
            self.mark = "?"

    def run(self, sql: str, params: tuple[Any, ...] = ()) -> Any:
        return self.connection.execute(sql.replace("%s", self.mark), params)

    def drop_triggers(self) -> None:
        for name in TRIGGERS:
            if self.backend == "postgresql":
                self.run(f"DROP TRIGGER tasks_count_{name} ON tasks")
            elif name != "truncated":
                self.run(f"DROP TRIGGER tasks_count_{name}")

    def empty(self) -> None:
        self.run("DELETE FROM tasks")
        self.run("DELETE FROM task_counts")
        self.run("VACUUM" if self.backend == "sqlite" else "VACUUM tasks, task_counts")

    def close(self) -> None:
        self.connection.close()


def row() -> tuple[Any, ...]:
    return (str(uuid.uuid4()), "ep", '{"n": 1}', "created", 0, 0.0, 0)


def defer_one(db: Plain, count: int = 1000) -> float:
    sql = f"INSERT INTO tasks ({COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s)"
    started = time.perf_counter()
    for _ in range(count):
        db.run(sql, row())
    return (time.perf_counter() - started) / count


def defer_many(db: Plain, count: int = 5000) -> float:
    rows = [row() for _ in range(count)]
    started = time.perf_counter()
    if db.backend == "postgresql":
        with db.connection.cursor().copy(f"COPY tasks ({COLUMNS}) FROM STDIN") as copy:
            for values in rows:
                copy.write_row(values)
    else:
        db.connection.execute("BEGIN IMMEDIATE")
        db.connection.executemany(
            f"INSERT INTO tasks ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)", rows
        )
        db.connection.execute("COMMIT")
    return time.perf_counter() - started


def updates(db: Plain, assignment: str, count: int = 300) -> float:
    ids = [task_id for (task_id,) in db.run("SELECT id FROM tasks ORDER BY id LIMIT 10").fetchall()]
    marks = ", ".join([db.mark] * len(ids))
    sql = f"UPDATE tasks SET {assignment} WHERE id IN ({marks})"
    started = time.perf_counter()
    for _ in range(count):
        db.connection.execute(sql, ids)
    return (time.perf_counter() - started) / count


FLIP = "status = CASE WHEN status = 'created' THEN 'assigned' ELSE 'created' END"
# A settle storing a 10 KB result each (the transition tables copy the rows it changes).
RESULT = '{"text": "' + "x" * 10_000 + '"}'
SETTLE = (
    "status = CASE WHEN status = 'created' THEN 'completed' ELSE 'created' END, "
    f"result = '{RESULT}'"
)
STATEMENTS: dict[str, tuple[Callable[[Plain], float], float, str]] = {
    "defer one": (defer_one, 1e6, "us"),
    "defer 5,000 in one statement": (defer_many, 1e3, "ms"),
    "claim 10 (status changes)": (lambda db: updates(db, FLIP), 1e6, "us"),
    "settle 10, 10 KB results": (lambda db: updates(db, SETTLE), 1e6, "us"),
    "heartbeat 10 (no status change)": (lambda db: updates(db, "progress = 0.5"), 1e6, "us"),
}


def bench(backend: str, folder: Path, rounds: int) -> None:
    ours_db, drop_ours = fresh_database(backend, folder)
    base_db, drop_base = fresh_database(backend, folder)
    ours, base = Plain(ours_db, backend), Plain(base_db, backend)
    base.drop_triggers()
    times: dict[str, dict[str, list[float]]] = {"ours": {}, "base": {}}
    try:
        for round_ in range(rounds):
            sides = [("ours", ours), ("base", base)]
            for side, db in sides if round_ % 2 == 0 else sides[::-1]:
                db.empty()
                for name, (measure, _, _) in STATEMENTS.items():
                    times[side].setdefault(name, []).append(measure(db))
        print(f"\n== {backend}: median of {rounds} rounds, alternating")
        print(f"{'statement':34} {'with triggers':>14} {'without':>10} {'ratio':>7}")
        for name, (_, scale, unit) in STATEMENTS.items():
            with_ = statistics.median(times["ours"][name]) * scale
            without = statistics.median(times["base"][name]) * scale
            print(f"{name:34} {with_:11.1f} {unit} {without:7.1f} {unit} {without / with_:6.2f}x")
    finally:
        ours.close()
        base.close()
        drop_ours()
        drop_base()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--backends", default="postgresql,sqlite")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        for backend in args.backends.split(","):
            bench(backend, Path(folder), args.rounds)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
