"""Scaling across hosts: a 5,000-task drain by 1, 2 and 3 namespaces of 2 worker processes.

Run as root from the repository root (network namespaces; PostgreSQL 15 server binaries,
pgbouncer, nftables installed):

    PYTHONPATH=. python benchmarks/bench_hosts.py [--tasks 5000] [--rounds 1]

It builds the multi-host test harness (tests/distributed/harness.py): three network
namespaces, a private PostgreSQL 15 cluster listening on each namespace's veth, PgBouncer
in transaction mode in front of it. For each of 1, 2 and 3 namespaces, directly and
through PgBouncer, ``aana worker tests.distributed.fleet_app:app --processes 2
--concurrency 10 --max-active-per-user 0`` runs in each namespace, idle first; then all
the tasks are stored in one call and the clock runs until every one is COMPLETED (polled
every 20 ms). Every run checks that each task is COMPLETED exactly once with its result.

Baseline, in the same run: two processes in the first namespace running a plain psycopg
claim/complete loop (``FOR UPDATE SKIP LOCKED``, 10 at a time) on the same table; the
ratio line compares one namespace of ``aana worker`` (direct) with it. Both sides start
idle: the clock runs from storing the tasks until the queue is drained.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg

from aana.tasks.manager import QueueManager
from tests.distributed import harness
from tests.helpers import REPO_ROOT, environment

IDLE = 4.0  # seconds the workers get to start and go idle before the tasks arrive

CLAIM = """
WITH claimed AS (
    SELECT id FROM tasks WHERE status = 'created'
    ORDER BY priority DESC, created_at LIMIT 10 FOR UPDATE SKIP LOCKED
)
UPDATE tasks SET status = 'running', assigned_at = now(), num_retries = num_retries + 1
FROM claimed WHERE tasks.id = claimed.id RETURNING tasks.id, tasks.data
"""
COMPLETE = """
UPDATE tasks SET status = 'completed', completed_at = now(), updated_at = now(),
    result = (data -> 'n') WHERE id = ANY(%s)
"""


def plain_consumer(conninfo: str) -> None:
    """The baseline: claim 10, complete them; runs until terminated."""
    with psycopg.connect(conninfo) as connection:
        while True:
            rows = connection.execute(CLAIM).fetchall()
            connection.commit()
            if not rows:
                time.sleep(0.005)
                continue
            connection.execute(COMPLETE, ([task_id for task_id, _ in rows],))
            connection.commit()


def completed(cluster: harness.Cluster, database: str) -> int:
    with psycopg.connect(
        host="127.0.0.1", port=cluster.port, user="postgres", dbname=database
    ) as connection:
        row = connection.execute("SELECT count(*) FROM tasks WHERE status = 'completed'").fetchone()
        return int(row[0]) if row else 0


def exactly_once(cluster: harness.Cluster, database: str, tasks: int) -> bool:
    with psycopg.connect(
        host="127.0.0.1", port=cluster.port, user="postgres", dbname=database
    ) as connection:
        rows = connection.execute("SELECT data, status, result FROM tasks").fetchall()
    return len(rows) == tasks and all(
        str(status) == "completed" and result == data["n"] for data, status, result in rows
    )


def drain(
    cluster: harness.Cluster,
    bouncer: harness.Bouncer | None,
    namespaces: int,
    tasks: int,
    folder: Path,
    plain: bool = False,
) -> float:
    """Tasks per second of one drain; raises if a task is missing or stored twice."""
    database = cluster.create_database("aana_template")
    port = bouncer.port if bouncer else cluster.port
    processes: list[subprocess.Popen[bytes]] = []
    logs = []
    try:
        for n in range(1, namespaces + 1):
            db = cluster.settings(database, host=harness.host_address(n), port=port)
            ns = harness.NAMESPACE.format(n)
            log = (folder / f"{ns}-{time.monotonic_ns()}.log").open("wb")
            logs.append(log)
            if plain:
                conninfo = f"postgresql://postgres@{harness.host_address(n)}:{port}/{database}"
                commands = [
                    [sys.executable, __file__, "--plain-consumer", conninfo] for _ in range(2)
                ]
            else:
                commands = [
                    [
                        *(sys.executable, "-m", "aana.cli", "worker", harness.APP),
                        *("--processes", "2", "--concurrency", "10"),
                        *("--max-active-per-user", "0"),
                    ]
                ]
            for command in commands:
                processes.append(
                    subprocess.Popen(
                        ["ip", "netns", "exec", ns, *command],
                        cwd=REPO_ROOT,
                        env=environment(db),
                        stdout=log,
                        stderr=subprocess.STDOUT,
                    )
                )
        time.sleep(IDLE)
        engine = cluster.settings(database).get_engine()
        items = [{"n": n} for n in range(tasks)]
        started = time.monotonic()
        QueueManager(engine).defer("record", items)
        engine.dispose()
        while completed(cluster, database) < tasks:
            if time.monotonic() - started > 300:
                raise RuntimeError("the drain did not finish within 300 s")
            time.sleep(0.02)
        seconds = time.monotonic() - started
        if not exactly_once(cluster, database, tasks):
            raise RuntimeError("a task is missing, failed or has another task's result")
        return tasks / seconds
    finally:
        for process in processes:
            if process.poll() is None:
                process.terminate()
        for process in processes:
            process.wait(60)
        for log in logs:
            log.close()
        cluster.drop_database(database)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--plain-consumer", metavar="CONNINFO")
    args = parser.parse_args()
    if args.plain_consumer:
        plain_consumer(args.plain_consumer)
        return 0
    reason = harness.unavailable_reason()
    if reason:
        print(f"cannot run: {reason}", file=sys.stderr)
        return 2
    print(f"CPUs: {os.cpu_count()}; tasks: {args.tasks}; rounds: {args.rounds}")
    with harness.exclusive():
        return measure(args.tasks, args.rounds)


def measure(tasks: int, rounds: int) -> int:
    harness.remove_stale_scratch()
    harness.create_network()
    folder = Path(tempfile.mkdtemp(prefix=harness.SCRATCH_PREFIX))
    cluster = harness.Cluster(folder)
    bouncer = harness.Bouncer(cluster)
    results: dict[str, float] = {}
    try:
        cluster.start()
        cluster.create_template()
        bouncer.start()
        print(f"logs (kept if a run fails): {folder}")
        runs: dict[str, list[float]] = {}
        for _ in range(rounds):
            name = "plain psycopg, 1 namespace x 2 processes"
            runs.setdefault(name, []).append(drain(cluster, None, 1, tasks, folder, plain=True))
            for via, pooler in (("direct", None), ("pgbouncer", bouncer)):
                for namespaces in (1, 2, 3):
                    name = f"aana worker, {via}, {namespaces} namespace(s) x 2 processes"
                    rate = drain(cluster, pooler, namespaces, tasks, folder)
                    runs.setdefault(name, []).append(rate)
                    print(f"{name}: {rate:,.0f} tasks/s", flush=True)
        print("\nmedian tasks/s (every task COMPLETED exactly once in every run):")
        for name, rates in runs.items():
            results[name] = statistics.median(rates)
            print(f"  {name:60s} {results[name]:8,.0f}")
        baseline = results["plain psycopg, 1 namespace x 2 processes"]
        one = results["aana worker, direct, 1 namespace(s) x 2 processes"]
        print(f"ratio aana worker (direct, 1 namespace) / plain psycopg: {one / baseline:.2f}x")
        for via in ("direct", "pgbouncer"):
            first = results[f"aana worker, {via}, 1 namespace(s) x 2 processes"]
            scaling = [
                results[f"aana worker, {via}, {n} namespace(s) x 2 processes"] / first
                for n in (1, 2, 3)
            ]
            print(f"scaling {via}, 1/2/3 namespaces: " + " / ".join(f"{s:.2f}x" for s in scaling))
        print(json.dumps(results))
        shutil.rmtree(folder, ignore_errors=True)
    finally:
        bouncer.stop()
        cluster.stop()
        harness.remove_network()
    return 0


if __name__ == "__main__":
    sys.exit(main())
