"""Fixtures of the multi-host tests: the network, a private PostgreSQL, PgBouncer, fleets.

The tests skip with the reason when this machine cannot run them (not root, no network
namespaces); with ``AANA_TEST_REQUIRE_DISTRIBUTED=1`` (set by CI) they fail instead.
Each scenario's figures are printed in the terminal summary and kept as JSON in the
pytest temporary folder.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.distributed import harness

REQUIRE = os.environ.get("AANA_TEST_REQUIRE_DISTRIBUTED") == "1"
_REPORTS: list[dict[str, object]] = []


@pytest.fixture(scope="session")
def network() -> Iterator[None]:
    reason = harness.unavailable_reason()
    if reason is not None:
        if REQUIRE:
            pytest.fail(
                f"the distributed tests are required (AANA_TEST_REQUIRE_DISTRIBUTED=1): {reason}"
            )
        pytest.skip(f"distributed tests: {reason}")
    with harness.exclusive():
        harness.remove_stale_scratch()
        try:
            harness.create_network()
            yield
        finally:
            harness.remove_network()


@pytest.fixture(scope="session")
def cluster(network: None) -> Iterator[harness.Cluster]:
    with harness.scratch_folder() as folder:
        cluster = harness.Cluster(folder)
        try:
            cluster.start()
            cluster.create_template()
            yield cluster
        finally:
            cluster.stop()


@pytest.fixture(scope="session")
def bouncer(cluster: harness.Cluster) -> Iterator[harness.Bouncer]:
    bouncer = harness.Bouncer(cluster)
    try:
        bouncer.start()
        yield bouncer
    finally:
        bouncer.stop()


@pytest.fixture
def fleet_db(cluster: harness.Cluster) -> Iterator[str]:
    """A fresh migrated database on the private cluster."""
    name = cluster.create_database(cluster.template)
    try:
        yield name
    finally:
        cluster.drop_database(name)


@pytest.fixture
def fleet(cluster: harness.Cluster, fleet_db: str, tmp_path: Path) -> Iterator[harness.Fleet]:
    fleet = harness.Fleet(fleet_db, cluster, tmp_path)
    try:
        yield fleet
    finally:
        fleet.stop()
        for n in range(1, harness.HOSTS + 1):  # whatever the scenario left broken
            harness.set_link(n, up=True)
            harness.unsilence(n)


@pytest.fixture
def report(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, object]]:
    """A scenario's figures: filled by the test, printed at the end of the session."""
    figures: dict[str, object] = {}
    yield figures
    if figures:
        _REPORTS.append(figures)
        path = tmp_path_factory.getbasetemp() / "distributed-report.json"
        path.write_text(json.dumps(_REPORTS, indent=2))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not _REPORTS:
        return
    terminalreporter.section("multi-host scenarios")
    for figures in _REPORTS:
        terminalreporter.write_line(" ".join(f"{key}={value}" for key, value in figures.items()))
