"""HTTP load benchmark: 50 clients polling ``GET /api/tasks/{id}`` while a worker runs.

Run from the repository root (PostgreSQL at 127.0.0.1:5432, user postgres):

    PYTHONPATH=. python benchmarks/bench_http.py [--tasks 5000] [--clients 50]
        [--seconds 20] [--processes 2] [--concurrency 10]

Each round gets a fresh PostgreSQL database holding ``--tasks`` no-op tasks, then starts
``aana worker bench_app:app`` and times it until the queue is drained:

- **baseline**: the worker alone;
- **with pollers**: ``aana dashboard bench_app:app`` (uvicorn) serves the task API in a
  subprocess, and ``--clients`` httpx async clients each poll ``GET /api/tasks/{id}`` of
  random tasks back to back for ``--seconds`` from the worker's start.

Prints the worker's throughput in both rounds and their ratio (with / without), and the
pollers' requests per second and latency (median, p95, p99). Worker and server start-up
(imports, connecting) count in neither rate: the clock starts when the worker claims its
first task. Targets: throughput ratio >= 0.8, p95 <= 100 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import httpx
import psycopg

from aana.configs.db import DbSettings
from aana.configs.settings import Settings
from aana.sdk import AanaSDK
from aana.storage.op import run_alembic_migrations

ROOT = Path(__file__).resolve().parents[1]
PG = {"host": "127.0.0.1", "port": 5432, "user": "postgres", "password": ""}


def new_database() -> tuple[DbSettings, str]:
    name = f"aana_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(dbname="postgres", autocommit=True, **PG) as admin:  # type: ignore[arg-type]
        admin.execute(f"CREATE DATABASE {name}")
    db = DbSettings(datastore_type="postgresql", datastore_config={**PG, "database": name})  # type: ignore[typeddict-item]
    run_alembic_migrations(Settings(db_config=db))
    return db, name


def drop_database(db: DbSettings, name: str) -> None:
    db.get_engine().dispose()
    with psycopg.connect(dbname="postgres", autocommit=True, **PG) as admin:  # type: ignore[arg-type]
        admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def environment(db: DbSettings) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'benchmarks'}",
        "DB_CONFIG": db.model_dump_json(),
        "AANA_LOG_LEVEL": "WARNING",
    }


def aana(db: DbSettings, *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "aana.cli", *args],
        cwd=ROOT / "benchmarks",
        env=environment(db),
        stdout=subprocess.DEVNULL,
    )


def count(db: DbSettings, query: str) -> int:
    with psycopg.connect(dbname=db.datastore_config["database"], **PG) as connection:  # type: ignore[arg-type,typeddict-item]
        row = connection.execute(query).fetchone()
        return int(row[0]) if row else 0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def serving(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2):
            return True
    except OSError:
        return False


async def poll(base: str, ids: list[str], until: float, latencies: list[float]) -> int:
    errors = 0
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        while time.monotonic() < until:
            started = time.perf_counter()
            response = await client.get(f"/api/tasks/{random.choice(ids)}")
            latencies.append(time.perf_counter() - started)
            errors += response.status_code != 200
    return errors


def run_worker(db: DbSettings, tasks: int, options: list[str]) -> float:
    """Start the worker on a full queue; tasks per second from its first claim to drained."""
    worker = aana(db, "worker", "bench_app:app", "--max-active-per-user", "0", *options)
    try:
        while count(db, "SELECT count(*) FROM tasks WHERE status <> 'created'") == 0:
            time.sleep(0.005)
        started = time.perf_counter()
        while count(db, "SELECT count(*) FROM tasks WHERE status <> 'completed'") > 0:
            time.sleep(0.02)
        return tasks / (time.perf_counter() - started)
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(60)


def round_(args: argparse.Namespace, with_pollers: bool) -> dict[str, Any]:
    db, name = new_database()
    server = None
    try:
        app = AanaSDK(name="bench-http", settings=Settings(db_config=db), migrations_path=None)
        ids = app.defer_many("noop", [{"n": n} for n in range(args.tasks)])
        options = ["--processes", str(args.processes), "--concurrency", str(args.concurrency)]
        if not with_pollers:
            return {"throughput": run_worker(db, args.tasks, options)}
        port = free_port()
        server = aana(db, "dashboard", "bench_app:app", "--port", str(port))
        base = f"http://127.0.0.1:{port}"
        while not serving(f"{base}/api/tasks/counts"):
            time.sleep(0.1)
        latencies: list[float] = []

        async def load() -> tuple[float, int]:
            until = time.monotonic() + args.seconds
            pollers = [
                asyncio.create_task(poll(base, ids, until, latencies)) for _ in range(args.clients)
            ]
            throughput = await asyncio.to_thread(run_worker, db, args.tasks, options)
            return throughput, sum(await asyncio.gather(*pollers))

        started = time.monotonic()
        throughput, errors = asyncio.run(load())
        elapsed = time.monotonic() - started
        ordered = sorted(latencies)
        return {
            "throughput": throughput,
            "requests": len(ordered),
            "errors": errors,
            "rps": len(ordered) / elapsed,
            "p50": statistics.median(ordered) * 1000,
            "p95": ordered[int(len(ordered) * 0.95)] * 1000,
            "p99": ordered[int(len(ordered) * 0.99)] * 1000,
        }
    finally:
        if server is not None:
            server.terminate()
            server.wait(30)
        drop_database(db, name)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=5000)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=10)
    args = parser.parse_args()
    baseline = round_(args, with_pollers=False)
    loaded = round_(args, with_pollers=True)
    ratio = loaded["throughput"] / baseline["throughput"]
    print(json.dumps({"baseline": baseline, "with_pollers": loaded}, indent=2))
    print(f"worker alone:        {baseline['throughput']:8.0f} tasks/s")
    print(f"worker with pollers: {loaded['throughput']:8.0f} tasks/s  (ratio {ratio:.2f})")
    print(
        f"pollers: {loaded['rps']:.0f} requests/s, p50 {loaded['p50']:.1f} ms, "
        f"p95 {loaded['p95']:.1f} ms, p99 {loaded['p99']:.1f} ms, {loaded['errors']} errors"
    )
    ok = ratio >= 0.8 and loaded["p95"] <= 100 and not loaded["errors"]
    print("targets (ratio >= 0.8, p95 <= 100 ms, no errors):", "met" if ok else "MISSED")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
