"""Shared fixtures for the h2 engine's tests: a gateway (h2 engine) in front of the fake backend."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from sparkgate.clusters.manager import ClusterManager
from sparkgate.clusters.static import StaticProvider
from sparkgate.config import load_settings
from sparkgate.gateway.server import Gateway
from sparkgate.testing.fake_backend import FakeSparkConnectServer


@pytest.fixture
async def backend_and_gateway(tmp_path: Path) -> AsyncIterator[tuple[FakeSparkConnectServer, Gateway]]:
    async with FakeSparkConnectServer(chunks=2, chunk_bytes=1024) as fake:
        gw = {"host": "127.0.0.1", "port": 0, "affinity": {"backend": "memory"}, "engine": "h2"}
        settings = load_settings(None, {}, gateway=gw, state_dir=tmp_path)
        cm = ClusterManager(StaticProvider([fake.address]), pool_size=0)
        await cm.start()
        async with Gateway(settings, cm) as g:
            yield fake, g
        await cm.close()


@pytest.fixture
def gateway(backend_and_gateway: tuple[FakeSparkConnectServer, Gateway]) -> Gateway:
    return backend_and_gateway[1]
