"""/metrics from the database, and a worker's own metrics, parsed as Prometheus reads them."""

from __future__ import annotations

import dataclasses
import json
import socket
import subprocess
import sys
import threading
import urllib.request

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from aana.api import metrics_router
from aana.configs.db import DbSettings
from aana.sdk import AanaSDK
from aana.storage.models.task import Status
from aana.storage.repository.task import TaskRepository
from aana.storage.session import get_session
from aana.tasks.supervisor import _for_process
from aana.tasks.worker import Worker, WorkerOptions
from tests.api.conftest import free_port
from tests.helpers import REPO_ROOT, environment, wait_until


def samples(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """The samples called ``name``, by their sorted labels."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                found[tuple(sorted(sample.labels.items()))] = sample.value
    return found


def test_metrics__gauges_match_the_database_counts(client: TestClient, aana_app: AanaSDK) -> None:
    ids = aana_app.defer_many("echo", [{"n": n} for n in range(4)])
    aana_app.defer("other", {})
    with get_session() as session:
        repository = TaskRepository(session)
        repository.update_status(ids[0], Status.COMPLETED)
        repository.update_status(ids[1], Status.FAILED, result={"error": "E"})
        expected = repository.count_by_endpoint()
        totals = repository.count()
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    gauges = samples(response.text, "aana_tasks")
    for endpoint in ("echo", "other"):
        for status in Status:
            key = (("endpoint", endpoint), ("status", status.value))
            assert gauges[key] == expected[endpoint].get(status.value, 0)
    assert sum(gauges.values()) == totals["total"] == 5


def test_metrics__read_once_per_cache_period(aana_app: AanaSDK) -> None:
    api = FastAPI()
    api.include_router(metrics_router(aana_app, cache_seconds=3600))
    with TestClient(api) as client:
        aana_app.defer("echo", {})
        first = samples(client.get("/metrics").text, "aana_tasks")
        aana_app.defer("echo", {})
        second = samples(client.get("/metrics").text, "aana_tasks")
    assert first == second  # the second scrape did not query the database
    assert first[(("endpoint", "echo"), ("status", "created"))] == 1


def test_worker_metrics__serve_durations_and_outcomes_after_tasks_run(aana_app: AanaSDK) -> None:
    @aana_app.task("ok")
    def ok(data: dict[str, int]) -> int:
        return data["n"]

    @aana_app.task("boom")
    def boom(data: dict[str, int]) -> None:
        raise RuntimeError("boom")

    port = free_port()
    options = WorkerOptions(concurrency=2, poll_interval=0.05, max_retries=1, metrics_port=port)
    worker = Worker(aana_app, options)
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        ok.defer_many([{"n": n} for n in range(5)])
        boom.defer_many([{"n": n} for n in range(2)])

        def all_done() -> bool:
            with get_session() as session:
                numbers = TaskRepository(session).count()
            return numbers["completed"] == 5 and numbers["failed"] == 2

        wait_until(all_done, timeout=30)
        wait_until(lambda: worker.processed == 7, timeout=10)
        url = f"http://127.0.0.1:{port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as answer:
            text = answer.read().decode()
    finally:
        worker.stop()
        thread.join(timeout=10)
    outcomes = samples(text, "aana_tasks_processed_total")
    with get_session() as session:
        counts = TaskRepository(session).count()
    assert outcomes[(("endpoint", "ok"), ("outcome", "completed"))] == counts["completed"] == 5
    assert outcomes[(("endpoint", "boom"), ("outcome", "failed"))] == counts["failed"] == 2
    durations = samples(text, "aana_task_duration_seconds_count")
    assert durations[(("endpoint", "ok"),)] == 5
    assert durations[(("endpoint", "boom"),)] == 2
    assert samples(text, "aana_task_duration_seconds_sum")[(("endpoint", "ok"),)] >= 0
    # Stopped with the worker: the port is free again.
    wait_until(lambda: not thread.is_alive(), timeout=10)


def test_worker_processes__each_serves_metrics_on_its_own_port() -> None:
    encoded = json.dumps(dataclasses.asdict(WorkerOptions(metrics_port=9100)))
    ports = [json.loads(_for_process(encoded, n))["metrics_port"] for n in range(3)]
    assert ports == [9100, 9101, 9102]
    without = json.dumps(dataclasses.asdict(WorkerOptions()))
    assert json.loads(_for_process(without, 1))["metrics_port"] is None


def test_worker_metrics__port_in_use_stops_the_worker_before_it_claims(aana_app: AanaSDK) -> None:
    task_id = aana_app.defer("ok", {})
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        worker = Worker(aana_app, WorkerOptions(metrics_port=taken.getsockname()[1], burst=True))
        with pytest.raises(OSError):
            worker.run()
    assert aana_app.get_task(task_id).status == Status.CREATED


def serves_metrics(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as answer:
            return b"aana_tasks_processed" in answer.read()
    except OSError:
        return False


def test_cli__worker_processes_serve_metrics_on_port_plus_n(db: DbSettings) -> None:
    port = free_port()
    while not all(port_is_free(port + n) for n in range(2)):
        port = free_port()
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "aana.cli",
            "worker",
            "tests.tasks.queue_app:app",
            "--processes",
            "2",
            "--metrics-port",
            str(port),
        ],
        cwd=REPO_ROOT,
        env=environment(db),
    )
    try:
        wait_until(lambda: serves_metrics(port) and serves_metrics(port + 1), timeout=60)
    finally:
        worker.terminate()
        assert worker.wait(timeout=60) == 0


def port_is_free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True
