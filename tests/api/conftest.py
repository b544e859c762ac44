"""Fixtures of the HTTP tests: an application on the test database and clients of it."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from aana.api import dashboard_router, metrics_router, tasks_router
from aana.configs.db import DbSettings
from aana.sdk import AanaSDK


@pytest.fixture
def aana_app(db: DbSettings) -> AanaSDK:
    """An application on the test's database (the process-wide settings)."""
    return AanaSDK(name="http-test", migrations_path=None)


def mounted(app: AanaSDK, **options: float) -> FastAPI:
    """A FastAPI app as a user builds one: the routers under prefixes of their own."""
    api = FastAPI()
    api.include_router(tasks_router(app, **options), prefix="/tasks")
    api.include_router(dashboard_router(app, **options), prefix="/dashboard")
    api.include_router(metrics_router(app, cache_seconds=0))
    return api


@pytest.fixture
def client(aana_app: AanaSDK) -> Iterator[TestClient]:
    with TestClient(mounted(aana_app)) as test_client:
        yield test_client


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
