"""Async API benchmark: each asyncio call beside the same sync call, in the same run.

Run from the repository root (PostgreSQL at 127.0.0.1:5432, user postgres):

    PYTHONPATH=. python benchmarks/bench_async.py [--rounds 3] [--backend both] [--scale 1.0]

Rows, each pair alternating ROUNDS times in this process on a fresh set of rows, the best
run of each side kept (``--scale`` multiplies every count, for a quick run):

- ``save``: ``AsyncVideoRepository.save`` of 1,000 videos, one awaited after the other,
  against ``VideoRepository.save``. Target: >= 0.8x the sync rate.
- ``read``: ``AsyncVideoRepository.read`` of 1,000 videos by id, against
  ``VideoRepository.read``. Target: >= 0.8x.
- ``save_all``: ``AsyncCaptionRepository.save_all`` of 100,000 captions, against
  ``CaptionRepository.save_all``. Target: >= 0.8x.
- ``defer``: ``app.defer_async`` of 5,000 tasks, one awaited after the other, against
  ``app.defer``. Target: >= 0.8x.
- ``concurrent read`` (PostgreSQL only): 50 coroutines on one event loop, a session
  each, reading the 1,000 videos between them, against one coroutine reading them all.
  Target: >= 1.5x.

Rows bounded by a hand-off to another thread or by the loop's one thread also print
their ceiling: the best ratio any code could reach there, from quantities measured in
the same run.

- SQLite: an async call does the sync call's work plus at least one hand-off to another
  thread per driver call (aiosqlite runs each one in the connection's thread;
  ``defer_async`` makes one ``asyncio.to_thread`` hop). The ceiling is
  ``sync time / (sync time + driver calls x one hand-off)``, the hand-off being the
  median of a no-op awaited on a fresh aiosqlite connection (or ``asyncio.to_thread``),
  the driver calls those SQLAlchemy reports for one call (``before_cursor_execute``,
  ``commit``, ``rollback`` events: a lower bound).
- 50 coroutines: they all run in the event loop's one thread, so they read no faster
  than that thread's CPU time per read allows (``time.process_time`` over the
  50-coroutine run; PostgreSQL runs in other processes). The ceiling is one
  coroutine's time per read over that CPU time.

Exits 1 if a target is missed.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import aiosqlite
from bench_repository import Database, timed
from sqlalchemy import event

from aana.core.models import Video
from aana.sdk import AanaSDK
from aana.storage.repository import (
    AsyncCaptionRepository,
    AsyncVideoRepository,
    CaptionRepository,
    VideoRepository,
)
from aana.storage.session import get_async_session, get_session

SAME_TARGET = 0.8
CONCURRENT_TARGET = 1.5
COROUTINES = 50
HAND_OFFS = 2_000
"""No-ops awaited to measure one hand-off to another thread (the median is kept)."""


class AsyncBench:
    """The rows of one backend; one event loop serves every async run (the pool is bound to it)."""

    def __init__(self, database: Database, runner: asyncio.Runner, scale: float) -> None:
        self.database = database
        self.runner = runner
        self.videos = max(1, int(1_000 * scale))
        self.captions = max(1, int(100_000 * scale))
        self.tasks = max(1, int(5_000 * scale))
        self.loop_cpu: list[float] = []
        """CPU seconds of this process in each 50-coroutine run (``concurrent_read``)."""

    def timed_async(self, run: Callable[[], Awaitable[object]]) -> float:
        async def measure() -> float:
            started = time.perf_counter()
            await run()
            return time.perf_counter() - started

        return self.runner.run(measure())

    def new_videos(self) -> list[Video]:
        return [Video(url=f"https://example.com/{n}.mp4", title="t") for n in range(self.videos)]

    def save(self) -> tuple[Callable[[], float], Callable[[], float], int]:
        def sync() -> float:
            videos = self.new_videos()
            with get_session() as session:
                repository = VideoRepository(session)
                return timed(lambda: [repository.save(video) for video in videos])

        def asyncio_() -> float:
            videos = self.new_videos()

            async def run() -> None:
                async with get_async_session() as session:
                    repository = AsyncVideoRepository(session)
                    for video in videos:
                        await repository.save(video)

            return self.timed_async(run)

        return sync, asyncio_, self.videos

    def stored_video_ids(self) -> list[str]:
        self.database.clear()
        with get_session() as session:
            repository = VideoRepository(session)
            return [repository.save(video)["media_id"] for video in self.new_videos()]

    def read(self, ids: list[str]) -> tuple[Callable[[], float], Callable[[], float], int]:
        def sync() -> float:
            with get_session() as session:
                repository = VideoRepository(session)
                return timed(lambda: [repository.read(media_id) for media_id in ids])

        def asyncio_() -> float:
            async def run() -> None:
                async with get_async_session() as session:
                    repository = AsyncVideoRepository(session)
                    for media_id in ids:
                        await repository.read(media_id)

            return self.timed_async(run)

        return sync, asyncio_, len(ids)

    def concurrent_read(
        self, ids: list[str]
    ) -> tuple[Callable[[], float], Callable[[], float], int]:
        async def reader(share: list[str]) -> None:
            async with get_async_session() as session:
                repository = AsyncVideoRepository(session)
                for media_id in share:
                    await repository.read(media_id)

        def one() -> float:
            return self.timed_async(lambda: reader(ids))

        def many() -> float:
            shares = [ids[n::COROUTINES] for n in range(COROUTINES)]
            cpu = time.process_time()
            elapsed = self.timed_async(lambda: asyncio.gather(*map(reader, shares)))
            self.loop_cpu.append(time.process_time() - cpu)
            return elapsed

        return one, many, len(ids)

    def save_all(self) -> tuple[Callable[[], float], Callable[[], float], int]:
        count = self.captions
        texts = [f"caption {n}" for n in range(count)]
        times = [n / 30 for n in range(count)]
        frames = list(range(count))

        def sync() -> float:
            self.database.clear()
            with get_session() as session:
                repository = CaptionRepository(session)
                return timed(lambda: repository.save_all("m", texts, times, frames))

        def asyncio_() -> float:
            self.database.clear()

            async def run() -> None:
                async with get_async_session() as session:
                    await AsyncCaptionRepository(session).save_all("m", texts, times, frames)

            return self.timed_async(run)

        return sync, asyncio_, count

    def defer(self) -> tuple[Callable[[], float], Callable[[], float], int]:
        app = AanaSDK()
        data = [{"n": n} for n in range(self.tasks)]

        def sync() -> float:
            self.database.clear()
            return timed(lambda: [app.defer("ep", item) for item in data])

        def asyncio_() -> float:
            self.database.clear()

            async def run() -> None:
                for item in data:
                    await app.defer_async("ep", item)

            return self.timed_async(run)

        return sync, asyncio_, self.tasks

    def hand_offs(self) -> tuple[float, float]:
        """Median seconds of one aiosqlite round trip and of one ``asyncio.to_thread`` hop.

        Each awaits a no-op in another thread: ``commit`` outside a transaction on a fresh
        aiosqlite connection, ``int`` in the loop's default executor.
        """

        async def median_of(call: Callable[[], Awaitable[object]]) -> float:
            times = []
            for _ in range(HAND_OFFS):
                started = time.perf_counter()
                await call()
                times.append(time.perf_counter() - started)
            return statistics.median(times)

        async def measure() -> tuple[float, float]:
            async with aiosqlite.connect(self.database.path) as connection:
                round_trip = await median_of(connection.commit)
            return round_trip, await median_of(lambda: asyncio.to_thread(int))

        return self.runner.run(measure())

    def driver_calls(self, run: Callable[[], float], count: int) -> float:
        """Driver calls per operation of ``run`` (an async side, run once more, counted).

        Counted by SQLAlchemy's events on the async engine: statements, commits and
        rollbacks. A BEGIN sent on the driver's cursor is not seen: a lower bound.
        """
        engine = self.database.db.get_async_engine().sync_engine
        calls = 0

        def counted(*_: object) -> None:
            nonlocal calls
            calls += 1

        names = ("before_cursor_execute", "commit", "rollback")
        for name in names:
            event.listen(engine, name, counted)
        try:
            run()
        finally:
            for name in names:
                event.remove(engine, name, counted)
        return calls / count


def best_rates(
    baseline: Callable[[], float], measured: Callable[[], float], count: int, rounds: int
) -> tuple[float, float]:
    """Rows per second of each side, the best of ``rounds`` alternating runs."""
    baseline_times, measured_times = [], []
    for round_ in range(rounds):
        sides = [(baseline, baseline_times), (measured, measured_times)]
        for run, times in sides if round_ % 2 == 0 else reversed(sides):
            times.append(run())
    return count / min(baseline_times), count / min(measured_times)


@dataclass
class Row:
    name: str
    baseline: float
    measured: float
    target: float
    ceiling: str = ""
    """The best ratio reachable here and what it is made of; empty if not computed."""


def bench_backend(backend: str, rounds: int, scale: float) -> tuple[list[Row], str]:
    """The rows of one backend, and what its ceilings were computed from."""
    rows = []
    basis = ""
    with tempfile.TemporaryDirectory() as folder, asyncio.Runner() as runner:
        database = Database(backend, Path(folder))
        bench = AsyncBench(database, runner, scale)
        try:

            def row(name: str, sides: tuple, target: float = SAME_TARGET) -> Row:
                baseline, measured, count = sides
                rows.append(Row(name, *best_rates(baseline, measured, count, rounds), target))
                return rows[-1]

            def thread_ceiling(measured: Row, calls: float, hand_off: float) -> None:
                sync_time = 1 / measured.baseline
                best = sync_time / (sync_time + calls * hand_off)
                measured.ceiling = (
                    f"ceiling {best:.2f}x = {sync_time * 1e6:.0f} us / ({sync_time * 1e6:.0f} us"
                    f" + {calls:.1f} x {hand_off * 1e6:.0f} us)"
                )

            sqlite = backend == "sqlite"
            saved = bench.save()
            save_row = row("save (videos)", saved)
            save_calls = bench.driver_calls(saved[1], saved[2]) if sqlite else 0
            ids = bench.stored_video_ids()
            read = bench.read(ids)
            read_row = row("read (videos)", read)
            read_calls = bench.driver_calls(read[1], read[2]) if sqlite else 0
            if not sqlite:
                concurrent = row(
                    f"read, {COROUTINES} coroutines", bench.concurrent_read(ids), CONCURRENT_TARGET
                )
                one_time = 1 / concurrent.baseline
                cpu = min(bench.loop_cpu) / len(ids)
                concurrent.ceiling = (
                    f"ceiling {one_time / cpu:.2f}x = {one_time * 1e6:.0f} us a read for one"
                    f" coroutine / {cpu * 1e6:.0f} us of the loop's CPU a read for {COROUTINES}"
                )
            row("save_all (captions)", bench.save_all())
            defer_row = row("defer (tasks)", bench.defer())
            if sqlite:
                round_trip, hop = bench.hand_offs()
                basis = (
                    f"one aiosqlite round trip {round_trip * 1e6:.0f} us, one asyncio.to_thread"
                    f" hop {hop * 1e6:.0f} us (medians of {HAND_OFFS:,} no-ops)"
                )
                thread_ceiling(save_row, save_calls, round_trip)
                thread_ceiling(read_row, read_calls, round_trip)
                thread_ceiling(defer_row, 1, hop)
        finally:
            runner.run(database.db.get_async_engine().dispose())
            database.drop()
    return rows, basis


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every count")
    args = parser.parse_args()
    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    print(f"best of {args.rounds} alternating rounds, counts x{args.scale:g}")
    missed = False
    for backend in backends:
        rows, basis = bench_backend(backend, args.rounds, args.scale)
        for row in rows:
            against = "one coroutine" if "coroutines" in row.name else "sync"
            ratio = row.measured / row.baseline
            verdict = "ok" if ratio >= row.target else "MISSED"
            missed |= verdict == "MISSED"
            print(
                f"{backend:>10}: {row.name:<22} async {row.measured:9.0f}/s"
                f"  {against} {row.baseline:9.0f}/s"
                f"  -> {ratio:.2f}x (target >= {row.target:.1f}x: {verdict})"
            )
        for row in rows:
            if row.ceiling:
                print(f"{backend:>10}: {row.name:<22} {row.ceiling}")
        if basis:
            print(f"{backend:>10}: {basis}")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
