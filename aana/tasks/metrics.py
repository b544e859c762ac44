"""A worker's own metrics, for Prometheus: task durations and outcomes.

Loaded only by workers started with a metrics port (``aana worker --metrics-port``):
``prometheus_client`` is an optional dependency (the ``api`` extra).
"""

from __future__ import annotations

import threading
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server

DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
"""Upper bounds (seconds) of the duration histogram: from quick calls to long media jobs."""


class WorkerMetrics:
    """Durations and outcomes of the tasks one worker process ran, served over HTTP."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.duration = Histogram(
            "aana_task_duration_seconds",
            "Seconds a task's handler ran, per endpoint",
            ["endpoint"],
            buckets=DURATION_BUCKETS,
            registry=self.registry,
        )
        self.outcomes = Counter(
            "aana_tasks_processed",
            "Tasks this worker ran, per endpoint and outcome (completed, failed)",
            ["endpoint", "outcome"],
            registry=self.registry,
        )
        self._server: Any = None
        self._thread: threading.Thread | None = None

    def observe(self, endpoint: str, outcome: str, seconds: float) -> None:
        """Count one task that ended with ``outcome`` after running ``seconds``."""
        self.duration.labels(endpoint).observe(seconds)
        self.outcomes.labels(endpoint, outcome).inc()

    def serve(self, port: int, host: str = "127.0.0.1") -> None:
        """Serve ``/metrics`` on ``host:port`` from a daemon thread."""
        self._server, self._thread = start_http_server(port, host, registry=self.registry)

    def close(self) -> None:
        """Stop serving."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
