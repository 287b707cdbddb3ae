"""Servers every part of the suite may share: Debian's redis-server and haproxy, started once per
test run on free ports (``scripts/test`` installs them)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from sparkgate.testing.haproxy import find_haproxy
from sparkgate.testing.redis import TempRedis, find_server


def _missing(what: str, package: str) -> None:
    if os.environ.get("SPARKGATE_FAST") == "1":
        pytest.skip(f"{what} is not installed (SPARKGATE_FAST=1)")
    pytest.fail(f"{what} is not installed: scripts/test installs it (apt-get install {package})")


@pytest.fixture(scope="session")
def redis_server() -> Iterator[TempRedis]:
    """Debian's redis-server on a free port, once per test run (tests use key prefixes of their own)."""
    if find_server() is None:
        _missing("Redis", "redis-server")
    server = TempRedis()
    with server:
        yield server


@pytest.fixture(scope="session")
def haproxy_binary() -> str:
    found = find_haproxy()
    if found is None:
        _missing("haproxy", "haproxy")
    assert found is not None
    return found
