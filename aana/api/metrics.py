"""``metrics_router``: ``GET /metrics``, the queue's counts in Prometheus text format.

The counts come from one ``GROUP BY`` query, cached for ``cache_seconds``: however often
Prometheus (or several of them) scrapes, the database answers at most once per period.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

from fastapi import APIRouter, Response, params
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from aana.api.calls import call_database
from aana.api.counts import CachedCounts
from aana.storage.models.task import Status

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

    from aana.sdk import AanaSDK


class QueueCollector(Collector):
    """Gauges of the tasks per status and endpoint, read from the database and cached."""

    def __init__(self, app: AanaSDK, cache_seconds: float = 5.0) -> None:
        self.counts = CachedCounts(app, cache_seconds)

    def collect(self) -> Iterator[Metric]:
        """The gauge ``aana_tasks{status, endpoint}``."""
        gauge = GaugeMetricFamily(
            "aana_tasks",
            "Tasks in the database per status and endpoint",
            labels=["status", "endpoint"],
        )
        for endpoint, numbers in sorted(self.counts.by_endpoint().items()):
            for task_status in Status:
                gauge.add_metric([task_status.value, endpoint], numbers.get(task_status.value, 0))
        yield gauge


def metrics_router(
    app: AanaSDK,
    *,
    dependencies: Sequence[params.Depends] | None = None,
    cache_seconds: float = 5.0,
    timeout: float = 30.0,
) -> APIRouter:
    """A router with ``GET /metrics``: the gauge ``aana_tasks{status, endpoint}``.

    Args:
        app: The application whose database holds the tasks.
        dependencies: FastAPI dependencies run before the route (auth).
        cache_seconds: How long one reading of the database is served.
        timeout: Seconds the database may take before the answer is a 503.

    """
    registry = CollectorRegistry(auto_describe=False)
    registry.register(QueueCollector(app, cache_seconds))
    router = APIRouter(dependencies=list(dependencies or ()), tags=["metrics"])

    @router.get(
        "/metrics",
        response_class=Response,
        summary="Prometheus metrics of the task queue",
        responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}, 503: {"description": "No DB"}},
    )
    async def metrics() -> Response:
        body = await call_database(generate_latest, registry, timeout=timeout)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    return router
