"""The harness says why it cannot run, so that the tests skip (or fail in CI) with a reason."""

import os

import pytest

from tests.distributed import harness


def test_unavailable_reason__not_root_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert harness.unavailable_reason() == (
        "needs root (network namespaces, a private PostgreSQL cluster)"
    )


def test_unavailable_reason__a_missing_tool_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setattr(harness.shutil, "which", lambda tool: None if tool == "nft" else tool)
    assert harness.unavailable_reason() == "the 'nft' command is missing"
