"""Shared fixtures for the h2 engine's tests: a gateway (h2 engine) in front of the fake backend."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from sparkgate.clusters.manager import ClusterManager
from sparkgate.clusters.static import StaticProvider
from sparkgate.config import load_settings
from sparkgate.gateway.server import Gateway
from sparkgate.testing.fake_backend import FakeSparkConnectServer


@contextlib.asynccontextmanager
async def gateway_to(
    address: str,
    state_dir: Path,
    *,
    state: dict[str, Any] | None = None,
    rate_limits: dict[str, Any] | None = None,
    **gateway: Any,
) -> AsyncIterator[Gateway]:
    """A gateway (``gateway``, ``state`` and ``rate_limits`` settings overridden) in front of the
    driver at ``address``."""
    gw = {"host": "127.0.0.1", "port": 0, "affinity": {"backend": "memory"}, **gateway}
    settings = load_settings(
        None, {}, gateway=gw, state=state or {}, rate_limits=rate_limits or {}, state_dir=state_dir
    )
    cm = ClusterManager(StaticProvider([address]), pool_size=0)
    await cm.start()
    try:
        async with Gateway(settings, cm) as g:
            yield g
    finally:
        await cm.close()


@contextlib.asynccontextmanager
async def serve(state_dir: Path, **gateway: Any) -> AsyncIterator[tuple[FakeSparkConnectServer, Gateway]]:
    """The fake backend and a gateway (h2 engine, ``gateway`` settings overridden) in front of it."""
    async with (
        FakeSparkConnectServer(chunks=2, chunk_bytes=1024) as fake,
        gateway_to(fake.address, state_dir, **gateway) as g,
    ):
        yield fake, g


@pytest.fixture
async def backend_and_gateway(tmp_path: Path) -> AsyncIterator[tuple[FakeSparkConnectServer, Gateway]]:
    async with serve(tmp_path) as both:
        yield both


@pytest.fixture
def gateway(backend_and_gateway: tuple[FakeSparkConnectServer, Gateway]) -> Gateway:
    return backend_and_gateway[1]
