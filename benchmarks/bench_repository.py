"""Repository benchmark: reads and one-by-one saves beside their plain baselines.

Run from the repository root (PostgreSQL at 127.0.0.1:5432, user postgres):

    PYTHONPATH=. python benchmarks/bench_repository.py [--rounds 5] [--backend both]

Rows compared, each pair alternating ROUNDS times in this process, best run of each kept:

- ``VideoRepository.read`` / ``TranscriptRepository.read`` of 1,000 rows by id in one
  fresh session, against a plain SQLAlchemy ORM loop of ``session.get`` in one fresh
  session (the original SDK's pattern). Target: >= 1.0x.
- ``VideoRepository.save``, ``CaptionRepository.save``, ``TaskRepository.save``, one by
  one, against a plain driver loop (``sqlite3`` / psycopg) inserting the same rows and
  committing after each. Target: >= 0.5x.
- For reference (no target): a bare SQLAlchemy Core loop of the caption inserts
  (``Connection.execute(insert(table), row)`` and ``commit()`` per row, on the same
  engine), against the same plain driver loop: the floor any SQLAlchemy code pays.

Exits 1 if a target is missed.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import psycopg
from psycopg import sql
from sqlalchemy import delete, insert
from sqlalchemy.orm import Session

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from aana.configs.db import DbSettings  # noqa: E402
from aana.configs.settings import Settings, settings  # noqa: E402
from aana.core.models import AsrSegment, AsrTranscription, AsrTranscriptionInfo, TimeInterval, Video  # noqa: E402  # noqa: E402
from aana.storage.models import (  # noqa: E402
    CaptionEntity,
    MediaEntity,
    TaskEntity,
    TranscriptEntity,
    VideoEntity,
)
from aana.storage.op import run_alembic_migrations  # noqa: E402
from aana.storage.repository import (  # noqa: E402
    CaptionRepository,
    TaskRepository,
    TranscriptRepository,
    VideoRepository,
)
from aana.storage.session import get_session  # noqa: E402

PG = {"host": "127.0.0.1", "port": 5432, "user": "postgres", "password": ""}
N = 1000
READ_TARGET = 1.0
SAVE_TARGET = 0.5
REFERENCE = "Core insert+commit (ref.)"


def timed(run: Callable[[], object]) -> float:
    started = time.perf_counter()
    run()
    return time.perf_counter() - started


class Database:
    """A fresh, migrated database on one backend, with a plain driver connection."""

    def __init__(self, backend: str, folder: Path) -> None:
        self.backend = backend
        if backend == "sqlite":
            self.path = folder / "bench.db"
            self.db = DbSettings(datastore_config={"path": str(self.path)})
        else:
            self.name = f"aana_bench_{uuid.uuid4().hex[:12]}"
            with psycopg.connect(dbname="postgres", autocommit=True, **PG) as admin:
                admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.name)))
            self.db = DbSettings(
                datastore_type="postgresql", datastore_config={**PG, "database": self.name}
            )
        run_alembic_migrations(Settings(db_config=self.db))
        settings.db_config = self.db
        self.marker = "?" if backend == "sqlite" else "%s"

    def plain(self) -> sqlite3.Connection | psycopg.Connection:
        if self.backend == "sqlite":
            connection = sqlite3.connect(self.path, isolation_level=None)
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=NORMAL")
            return connection
        return psycopg.connect(dbname=self.name, **PG)

    def clear(self) -> None:
        with Session(self.db.get_engine()) as session:
            for entity in (VideoEntity, MediaEntity, CaptionEntity, TaskEntity, TranscriptEntity):
                session.execute(delete(entity.__table__))
            session.commit()

    def drop(self) -> None:
        self.db.get_engine().dispose()
        if self.backend != "sqlite":
            with psycopg.connect(dbname="postgres", autocommit=True, **PG) as admin:
                admin.execute(
                    sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(self.name))
                )


def plain_insert_loop(database: Database, statements: list[tuple[str, list[tuple]]]) -> float:
    """Each row's statements in a transaction of its own, committed (the plain driver)."""
    connection = database.plain()
    rows = list(zip(*(values for _, values in statements), strict=True))
    texts = [text.replace("?", database.marker) for text, _ in statements]

    def run() -> None:
        for row in rows:
            if database.backend == "sqlite":
                connection.execute("BEGIN")
            for text, values in zip(texts, row, strict=True):
                connection.execute(text, values)
            connection.commit()

    elapsed = timed(run)
    connection.close()
    return elapsed


def bench_saves(database: Database, rounds: int) -> list[tuple[str, float, float]]:
    results = []
    ids = [[str(uuid.uuid4()) for _ in range(N)] for _ in range(2 * rounds)]
    videos = [
        [Video(media_id=i, url=f"https://example.com/{i}.mp4", title="t") for i in round_ids]
        for round_ids in ids
    ]

    def video_plain(round_: int) -> float:
        media = [(i, "video") for i in ids[round_]]
        video = [(i, None, f"https://example.com/{i}.mp4", "t", "") for i in ids[round_]]
        return plain_insert_loop(
            database,
            [
                ("INSERT INTO media (id, media_type) VALUES (?, ?)", media),
                (
                    "INSERT INTO video (id, path, url, title, description) VALUES (?, ?, ?, ?, ?)",
                    video,
                ),
            ],
        )

    def video_ours(round_: int) -> float:
        with get_session() as session:
            repository = VideoRepository(session)
            return timed(lambda: [repository.save(video) for video in videos[round_]])

    def caption_plain(_round: int) -> float:
        rows = [("m", "a caption", i, i / 30, "caption") for i in range(N)]
        text = (
            "INSERT INTO caption (model, caption, frame_id, timestamp, caption_type) "
            "VALUES (?, ?, ?, ?, ?)"
        )
        return plain_insert_loop(database, [(text, rows)])

    def caption_ours(_round: int) -> float:
        with get_session() as session:
            repository = CaptionRepository(session)
            return timed(lambda: [repository.save("m", "a caption", i / 30, i) for i in range(N)])

    def task_plain(_round: int) -> float:
        rows = [
            (str(uuid.uuid4()), "ep", json.dumps({"n": i}), "created", 0, 0.0, 0, None)
            for i in range(N)
        ]
        text = (
            "INSERT INTO tasks (id, endpoint, data, status, priority, progress, num_retries, "
            "user_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
        )
        if database.backend == "sqlite":
            rows = [(uuid.UUID(row[0]).hex, *row[1:]) for row in rows]
        return plain_insert_loop(database, [(text, rows)])

    def task_ours(_round: int) -> float:
        with get_session() as session:
            repository = TaskRepository(session)
            return timed(lambda: [repository.save("ep", {"n": i}) for i in range(N)])

    def caption_core(_round: int) -> float:
        table = CaptionEntity.__table__
        rows = [
            {
                "model": "m",
                "caption": "a caption",
                "frame_id": i,
                "timestamp": i / 30,
                "caption_type": "caption",
            }
            for i in range(N)
        ]
        with database.db.get_engine().connect() as connection:

            def run() -> None:
                for row in rows:
                    connection.execute(insert(table), row)
                    connection.commit()

            return timed(run)

    pairs = [
        ("VideoRepository.save", video_plain, video_ours),
        ("CaptionRepository.save", caption_plain, caption_ours),
        ("TaskRepository.save", task_plain, task_ours),
        (REFERENCE, caption_plain, caption_core),
    ]
    for name, plain, ours in pairs:
        plain_times, our_times = [], []
        for round_ in range(rounds):
            database.clear()
            plain_times.append(plain(2 * round_))
            database.clear()
            our_times.append(ours(2 * round_ + 1))
        results.append((name, N / min(plain_times), N / min(our_times)))
    return results


def bench_reads(database: Database, rounds: int) -> list[tuple[str, float, float]]:
    database.clear()
    with get_session() as session:
        video_ids = [
            VideoRepository(session).save(Video(url=f"https://example.com/{i}.mp4", title="t"))[
                "media_id"
            ]
            for i in range(N)
        ]
        segments = [AsrSegment(text="hello", time_interval=TimeInterval(start=0, end=1))] * 5
        transcript_ids = [
            TranscriptRepository(session)
            .save(
                "whisper",
                AsrTranscriptionInfo(language="en", language_confidence=0.9),
                AsrTranscription(text="hello " * 20),
                segments,
            )
            .id
            for _ in range(N)
        ]
    results = []
    cases = [
        ("VideoRepository.read", VideoEntity, VideoRepository, video_ids),
        ("TranscriptRepository.read", TranscriptEntity, TranscriptRepository, transcript_ids),
    ]
    engine = database.db.get_engine()
    for name, entity, repository_class, ids in cases:
        plain_times, our_times = [], []
        for _ in range(rounds):

            def plain(entity: type = entity, ids: list = ids) -> None:
                with Session(engine) as session:
                    for item_id in ids:
                        session.get(entity, item_id)

            def ours(repository_class: type = repository_class, ids: list = ids) -> None:
                with get_session() as session:
                    repository = repository_class(session)
                    for item_id in ids:
                        repository.read(item_id)

            plain_times.append(timed(plain))
            our_times.append(timed(ours))
        results.append((name, N / min(plain_times), N / min(our_times)))
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    args = parser.parse_args()
    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    missed = False
    print(f"{N:,} rows per run, best of {args.rounds} alternating rounds")
    for backend in backends:
        with tempfile.TemporaryDirectory() as folder:
            database = Database(backend, Path(folder))
            try:
                reads = bench_reads(database, args.rounds)
                saves = bench_saves(database, args.rounds)
            finally:
                database.drop()
        baseline = {"sqlite": "sqlite3", "postgresql": "psycopg"}[backend]
        for (name, plain, ours), target, against in [
            *((row, READ_TARGET, "session.get loop") for row in reads),
            *((row, SAVE_TARGET, f"plain {baseline} insert+commit") for row in saves),
        ]:
            ratio = ours / plain
            if name == REFERENCE:
                verdict = "no target"
            else:
                verdict = f"target >= {target:.1f}x: " + ("ok" if ratio >= target else "MISSED")
                missed |= verdict.endswith("MISSED")
            print(
                f"{backend:>10}: {name:<26} {ours:8.0f}/s  {against} {plain:8.0f}/s  "
                f"-> {ratio:.2f}x ({verdict})"
            )
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
