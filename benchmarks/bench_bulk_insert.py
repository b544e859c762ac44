"""Bulk caption inserts: aana's ``CaptionRepository.save_all`` against the plain driver.

Each round inserts the same N captions into the same, freshly migrated ``caption`` table
twice: once with the plain driver's ``executemany`` (``sqlite3`` / psycopg) and once
with ``save_all`` (entities returned). Both run in this process, alternately, and the
best time of each is compared.

    python benchmarks/bench_bulk_insert.py [--rows 100000] [--rounds 3] [--backend both]

Targets: SQLite at most 4x ``sqlite3``, PostgreSQL at most 2x psycopg.
Exits 1 if a target is missed.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import psycopg
from psycopg import sql

from aana.configs.db import DbSettings
from aana.configs.settings import Settings
from aana.storage.op import run_alembic_migrations
from aana.storage.repository import CaptionRepository
from aana.storage.session import get_session

PG = {"host": "127.0.0.1", "port": 5432, "user": "postgres", "password": ""}
TARGETS = {"sqlite": 4.0, "postgresql": 2.0}
INSERT = "INSERT INTO caption (model, caption, frame_id, timestamp, caption_type) VALUES "


def captions(rows: int) -> tuple[list[str], list[float], list[int]]:
    return (
        [f"a frame showing thing {i}" for i in range(rows)],
        [i / 30 for i in range(rows)],
        list(range(rows)),
    )


def driver_rows(texts: list[str], times: list[float], frames: list[int]) -> list[tuple]:
    return [
        ("bench-model", t, f, s, "caption") for t, s, f in zip(texts, times, frames, strict=True)
    ]


def timed(run: Callable[[], object]) -> float:
    started = time.perf_counter()
    run()
    return time.perf_counter() - started


def migrated(db: DbSettings) -> DbSettings:
    run_alembic_migrations(Settings(db_config=db))
    return db


def save_all(db: DbSettings, texts: list[str], times: list[float], frames: list[int]) -> None:
    from aana.configs.settings import settings

    settings.db_config = db
    with get_session() as session:
        entities = CaptionRepository(session).save_all("bench-model", texts, times, frames)
        assert len(entities) == len(texts) and entities[-1].id is not None


def bench_sqlite(rows: int, rounds: int) -> tuple[list[float], list[float]]:
    texts, times, frames = captions(rows)
    plain, ours = [], []
    with tempfile.TemporaryDirectory() as folder:
        for round_ in range(rounds):
            path = Path(folder) / f"raw{round_}.db"
            migrated(DbSettings(datastore_config={"path": str(path)})).get_engine().dispose()
            connection = sqlite3.connect(path)
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=NORMAL")
            data = [
                ("bench-model", t, f, s, "caption")
                for t, s, f in zip(texts, times, frames, strict=False)
            ]

            def raw(connection: sqlite3.Connection = connection, data: list = data) -> None:
                connection.executemany(INSERT + "(?, ?, ?, ?, ?)", data)
                connection.commit()

            plain.append(timed(raw))
            connection.close()
            db = migrated(
                DbSettings(datastore_config={"path": str(Path(folder) / f"o{round_}.db")})
            )
            ours.append(timed(lambda db=db: save_all(db, texts, times, frames)))
            db.get_engine().dispose()
    return plain, ours


def bench_postgresql(rows: int, rounds: int) -> tuple[list[float], list[float]]:
    texts, times, frames = captions(rows)
    name = f"aana_bench_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(dbname="postgres", autocommit=True, **PG) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    db = migrated(
        DbSettings(datastore_type="postgresql", datastore_config={**PG, "database": name})
    )
    plain, ours = [], []
    try:
        with psycopg.connect(dbname=name, **PG) as connection:
            data = [
                ("bench-model", t, f, s, "caption")
                for t, s, f in zip(texts, times, frames, strict=False)
            ]
            for _ in range(rounds):
                connection.execute("TRUNCATE caption RESTART IDENTITY")
                connection.commit()

                def raw(connection: psycopg.Connection = connection) -> None:
                    with connection.cursor() as cursor:
                        cursor.executemany(INSERT + "(%s, %s, %s, %s, %s)", data)
                    connection.commit()

                plain.append(timed(raw))
                connection.execute("TRUNCATE caption RESTART IDENTITY")
                connection.commit()
                ours.append(timed(lambda: save_all(db, texts, times, frames)))
    finally:
        db.get_engine().dispose()
        with psycopg.connect(dbname="postgres", autocommit=True, **PG) as admin:
            admin.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))
    return plain, ours


PEAK_RSS_TARGET_MB = 150

PEAK_RSS_SCRIPT = """
import resource, sys, tempfile
from pathlib import Path
from aana.configs.db import DbSettings
from aana.configs.settings import Settings, settings
from aana.storage.op import run_alembic_migrations
from aana.storage.repository import CaptionRepository
from aana.storage.session import get_session
rows = int(sys.argv[1])
folder = tempfile.mkdtemp()
db = DbSettings(datastore_config={"path": str(Path(folder) / "rss.db")})
run_alembic_migrations(Settings(db_config=db))
settings.db_config = db
texts = [f"a frame showing thing {i}" for i in range(rows)]
with get_session() as session:
    saved = CaptionRepository(session).save_all(
        "bench-model", texts, [i / 30 for i in range(rows)], list(range(rows))
    )
    assert len(saved) == rows
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
"""


def peak_rss_mb(rows: int) -> float:
    """Peak RSS of a fresh process that migrates a SQLite file and runs one save_all."""
    output = subprocess.run(
        [sys.executable, "-c", PEAK_RSS_SCRIPT, str(rows)],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
    ).stdout
    return float(output.split()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    args = parser.parse_args()
    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    missed = False
    print(f"save_all of {args.rows:,} captions, best of {args.rounds} rounds")
    for backend in backends:
        bench = bench_sqlite if backend == "sqlite" else bench_postgresql
        plain, ours = bench(args.rows, args.rounds)
        ratio = min(ours) / min(plain)
        verdict = "ok" if ratio <= TARGETS[backend] else "MISSED"
        missed |= verdict == "MISSED"
        driver = "sqlite3" if backend == "sqlite" else "psycopg"
        print(
            f"{backend:>10}: plain {driver} executemany {min(plain):.3f}s "
            f"(median {statistics.median(plain):.3f}s), aana save_all {min(ours):.3f}s "
            f"(median {statistics.median(ours):.3f}s) -> {ratio:.2f}x "
            f"(target <= {TARGETS[backend]:.0f}x: {verdict})"
        )
        if backend == "sqlite":
            peak = peak_rss_mb(args.rows)
            verdict = "ok" if peak <= PEAK_RSS_TARGET_MB else "MISSED"
            missed |= verdict == "MISSED"
            print(
                f"{backend:>10}: peak RSS of a process running one save_all of {args.rows:,} "
                f"{peak:.0f} MB (target <= {PEAK_RSS_TARGET_MB} MB: {verdict})"
            )
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
