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

Exits 1 if a target is missed.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from bench_repository import Database, timed

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


class AsyncBench:
    """The rows of one backend; one event loop serves every async run (the pool is bound to it)."""

    def __init__(self, database: Database, runner: asyncio.Runner, scale: float) -> None:
        self.database = database
        self.runner = runner
        self.videos = max(1, int(1_000 * scale))
        self.captions = max(1, int(100_000 * scale))
        self.tasks = max(1, int(5_000 * scale))

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
            return self.timed_async(lambda: asyncio.gather(*map(reader, shares)))

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


def bench_backend(backend: str, rounds: int, scale: float) -> list[tuple[str, float, float, float]]:
    """``(row, baseline rate, async rate, target)`` for each row of one backend."""
    rows = []
    with tempfile.TemporaryDirectory() as folder, asyncio.Runner() as runner:
        database = Database(backend, Path(folder))
        bench = AsyncBench(database, runner, scale)
        try:

            def row(name: str, sides: tuple, target: float = SAME_TARGET) -> None:
                baseline, measured, count = sides
                rows.append((name, *best_rates(baseline, measured, count, rounds), target))

            row("save (videos)", bench.save())
            ids = bench.stored_video_ids()
            row("read (videos)", bench.read(ids))
            if backend == "postgresql":
                row(f"read, {COROUTINES} coroutines", bench.concurrent_read(ids), CONCURRENT_TARGET)
            row("save_all (captions)", bench.save_all())
            row("defer (tasks)", bench.defer())
        finally:
            runner.run(database.db.get_async_engine().dispose())
            database.drop()
    return rows


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
        for name, baseline, measured, target in bench_backend(backend, args.rounds, args.scale):
            against = "one coroutine" if "coroutines" in name else "sync"
            ratio = measured / baseline
            verdict = "ok" if ratio >= target else "MISSED"
            missed |= verdict == "MISSED"
            print(
                f"{backend:>10}: {name:<22} async {measured:9.0f}/s  {against} {baseline:9.0f}/s"
                f"  -> {ratio:.2f}x (target >= {target:.1f}x: {verdict})"
            )
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
