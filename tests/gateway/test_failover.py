"""Failover of a new session: its first call fails on a driver before any response → another driver.

Real gRPC, fake Spark Connect backends (a driver that cannot be reached, a driver
that answers UNAVAILABLE). A session that already lives on a driver is never moved: its state is
there (tests/e2e/test_lifecycle.py covers SESSION_CHANGED after a driver dies).
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import grpc.aio
import pytest

from sparkgate.aio import free_port
from sparkgate.clusters.manager import ClusterManager
from sparkgate.config import load_settings
from sparkgate.connect import wire
from sparkgate.gateway.server import Gateway
from sparkgate.testing.fake_backend import FakeSparkConnectServer
from sparkgate.testing.fake_provider import FakeProvider
from tests.gateway.test_relay import ROUTE, SVC, open_channel, read_rest, request


@contextlib.asynccontextmanager
async def gateway_over(provider: FakeProvider, tmp_path: Path) -> AsyncIterator[Gateway]:
    gw = {"host": "127.0.0.1", "port": 0, "affinity": {"backend": "memory"}}
    settings = load_settings(None, {}, gateway=gw, state_dir=tmp_path)
    cm = ClusterManager(provider, pool_size=0, sessions_per_driver=1)
    await cm.start()
    try:
        async with Gateway(settings, cm) as gateway:
            yield gateway
    finally:
        await cm.close()


def _driver_of(gw: Gateway, session_id: str) -> str:
    (route,) = [r for r in gw.store.all() if r.session_id == session_id]
    return route.driver_id


async def test_unreachable_driver_new_session_goes_to_another(tmp_path: Path) -> None:
    async with FakeSparkConnectServer() as good:
        provider = FakeProvider(addresses=[f"127.0.0.1:{free_port()}", good.address])  # first: nothing listens
        async with gateway_over(provider, tmp_path) as gw, open_channel(gw) as ch:
            sid = str(uuid.uuid4())
            resp = await ch.unary_unary(SVC + "Config")(request(sid), metadata=ROUTE)
            assert wire.read_string_field(resp, 1) == sid
            assert [c.session_id for c in good.calls_of("Config")] == [sid]
            assert _driver_of(gw, sid) == "fake-2"
            assert [d.sessions for d in gw.clusters.drivers() if d.id == "fake-2"] == [1]
            # Later calls of the session stay where it now lives.
            out = [m async for m in ch.unary_stream(SVC + "ExecutePlan")(request(sid), metadata=ROUTE)]
            assert out and len(good.calls_of("ExecutePlan")) == 1


async def test_driver_answering_unavailable_first_stream_goes_to_another(tmp_path: Path) -> None:
    async with (
        FakeSparkConnectServer(chunks=3, chunk_bytes=4096) as bad,
        FakeSparkConnectServer(chunks=3, chunk_bytes=4096) as good,
    ):
        bad.fail("ExecutePlan", grpc.StatusCode.UNAVAILABLE, "server shutting down")
        provider = FakeProvider(addresses=[bad.address, good.address])
        async with gateway_over(provider, tmp_path) as gw, open_channel(gw) as ch:
            sid = str(uuid.uuid4())
            out = [m async for m in ch.unary_stream(SVC + "ExecutePlan")(request(sid), metadata=ROUTE)]
            assert [wire.read_string_field(m, 13) for m in out] == ["r-0", "r-1", "r-2", "r-3"]
            assert len(bad.calls_of("ExecutePlan")) == 1 and len(good.calls_of("ExecutePlan")) == 1
            assert good.calls_of("ExecutePlan")[0].session_id == sid
            assert _driver_of(gw, sid) == "fake-2"


async def test_failover_gives_up_after_the_attempts_and_says_why(tmp_path: Path) -> None:
    async with FakeSparkConnectServer() as bad:
        for _ in range(3):
            bad.fail("AnalyzePlan", grpc.StatusCode.UNAVAILABLE, "still down")
        provider = FakeProvider(address=bad.address)
        async with gateway_over(provider, tmp_path) as gw, open_channel(gw) as ch:
            with pytest.raises(grpc.aio.AioRpcError) as e:
                await ch.unary_unary(SVC + "AnalyzePlan")(request(), metadata=ROUTE)
            assert e.value.code() is grpc.StatusCode.UNAVAILABLE
            assert len(bad.calls_of("AnalyzePlan")) == 3  # the first driver and two others
            assert len(provider.started) == 3


async def test_an_established_session_is_not_moved(tmp_path: Path) -> None:
    async with FakeSparkConnectServer() as first, FakeSparkConnectServer() as second:
        provider = FakeProvider(addresses=[first.address, second.address])
        async with gateway_over(provider, tmp_path) as gw, open_channel(gw) as ch:
            sid = str(uuid.uuid4())
            await ch.unary_unary(SVC + "Config")(request(sid), metadata=ROUTE)
            first.fail("ExecutePlan", grpc.StatusCode.UNAVAILABLE, "driver went away")
            call = ch.unary_stream(SVC + "ExecutePlan")(request(sid), metadata=ROUTE)
            with pytest.raises(grpc.aio.AioRpcError) as e:
                await read_rest(call)
            assert e.value.code() is grpc.StatusCode.UNAVAILABLE and e.value.details() == "driver went away"
            assert not second.calls and _driver_of(gw, sid) == "fake-1"
