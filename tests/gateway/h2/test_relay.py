"""The h2 relay carrying out the pipeline's intents: calls of a placed session go out at once,
without a task."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import grpc.aio
import pytest

from sparkgate.aio import TaskSupervisor
from sparkgate.clusters.manager import ClusterManager
from sparkgate.clusters.static import StaticProvider
from sparkgate.config import HealthSettings, load_settings
from sparkgate.connect import wire
from sparkgate.connect.probe import release_session
from sparkgate.gateway.h2 import frames as f
from sparkgate.gateway.h2.hpack import Decoder, encode_headers
from sparkgate.gateway.pipeline.call import Call
from sparkgate.gateway.pipeline.intents import Forward, Refuse, Wait
from sparkgate.gateway.server import Gateway
from sparkgate.testing.fake_backend import FakeSparkConnectServer
from sparkgate.testing.fake_provider import FakeProvider
from tests.gateway.h2.test_connection import RawClient, request_headers

SVC = "/spark.connect.SparkConnectService/"
ROUTE = (("x-doordash-team", "fe"), ("x-doordash-environment", "prod"))


def request(session_id: str) -> bytes:
    return wire.encode_string(1, session_id) + wire.encode_string(2, wire.encode_string(1, "alice"))


async def test_placed_sessions_are_routed_without_a_task(gateway: Gateway, monkeypatch: pytest.MonkeyPatch) -> None:
    spawned: list[str] = []
    spawn = TaskSupervisor.spawn

    def counting(self: TaskSupervisor, name: str, coro: Any) -> Any:
        spawned.append(name)
        return spawn(self, name, coro)

    monkeypatch.setattr(TaskSupervisor, "spawn", counting)
    sid = str(uuid.uuid4())
    async with grpc.aio.insecure_channel(f"127.0.0.1:{gateway.port}") as ch:
        config = ch.unary_unary(SVC + "Config")
        await config(request(sid), metadata=ROUTE)  # places the session: a task
        assert spawned == ["route:Config"]
        route = gateway.store.get(("alice", sid))
        assert route is not None
        for _ in range(3):
            assert await config(request(sid)) is not None
        chunks = [m async for m in ch.unary_stream(SVC + "ExecutePlan")(request(sid))]
        assert len(chunks) >= 2
        assert spawned == ["route:Config"]  # the later calls were routed synchronously
        touched = gateway.store.get(("alice", sid))
        assert touched is not None and touched.last_used >= route.last_used


async def test_only_placed_sessions_on_live_drivers_are_forwarded_without_waiting(gateway: Gateway) -> None:
    pipeline, sid = gateway.pipeline, str(uuid.uuid4())

    def call(session_id: str = sid, metadata: tuple[tuple[str, str], ...] = ()) -> Call:
        return Call("Config", metadata, wire.RequestIds(session_id, "alice"), b"")

    assert isinstance(pipeline.decide(call()), Refuse)  # not placed, and no team: refused at once
    assert isinstance(pipeline.decide(call("not-a-uuid")), Refuse)
    placed = await pipeline.decide_now(call(metadata=ROUTE))  # placing it waits for a driver
    assert isinstance(placed, Forward)
    known = pipeline.decide(call())
    assert isinstance(known, Forward) and known.driver is placed.driver and known.held_config is None
    known.driver.state = known.driver.state.DEAD
    lost = pipeline.decide(call())
    assert isinstance(lost, Wait)  # the route is dropped first, then the client is told
    told = await lost.decision
    assert isinstance(told, Refuse) and "SESSION_CHANGED" in str(told.error)


async def test_a_calls_deadline_is_kept_while_its_session_waits_for_a_driver(tmp_path: Path) -> None:
    async with FakeSparkConnectServer(chunks=2, chunk_bytes=1024) as fake:
        gw = {"host": "127.0.0.1", "port": 0, "affinity": {"backend": "memory"}}
        settings = load_settings(None, {}, gateway=gw, state_dir=tmp_path)
        cm = ClusterManager(FakeProvider(address=fake.address, start_delay=3.0), pool_size=0)  # a cold start
        await cm.start()
        async with Gateway(settings, cm) as gateway:
            c = await RawClient.connect(gateway.port)
            sid = str(uuid.uuid4())
            message = request(sid)
            headers = request_headers() + encode_headers([("grpc-timeout", "500m")])
            t0 = time.monotonic()
            c.writer.write(
                f.frame(f.HEADERS, f.END_HEADERS, 1, headers)
                + f.frame(f.DATA, f.END_STREAM, 1, b"\x00" + len(message).to_bytes(4, "big") + message)
            )
            flags, _, block = await c.until(f.HEADERS)
            trailers = dict(Decoder().decode(block))
            assert flags & f.END_STREAM and trailers["grpc-status"] == "4", trailers  # DEADLINE_EXCEEDED
            assert time.monotonic() - t0 < 2.5  # at the deadline, not when the driver is ready
            c.close()
            # The session was placed all the same: its next call goes to the driver.
            async with grpc.aio.insecure_channel(f"127.0.0.1:{gateway.port}") as ch:
                await ch.unary_unary(SVC + "Config")(message, metadata=ROUTE, timeout=10)
            assert [call.session_id for call in fake.calls_of("Config")][-1:] == [sid]
        await cm.close()


async def test_health_probes_and_releases_share_the_relays_driver_connection(tmp_path: Path) -> None:
    async with FakeSparkConnectServer(chunks=2, chunk_bytes=1024) as fake:
        gw = {"host": "127.0.0.1", "port": 0, "affinity": {"backend": "memory"}}
        settings = load_settings(None, {}, gateway=gw, state_dir=tmp_path)
        cm = ClusterManager(StaticProvider([fake.address]), pool_size=0, health=HealthSettings(interval_seconds=3600))
        await cm.start()
        assert cm.health is not None
        try:
            async with Gateway(settings, cm) as gateway:
                assert cm.health.calls is gateway.pool
                sid = str(uuid.uuid4())
                async with grpc.aio.insecure_channel(f"127.0.0.1:{gateway.port}") as ch:
                    await ch.unary_unary(SVC + "Config")(request(sid), metadata=ROUTE)
                conns = gateway.pool.connections()
                (driver,) = cm.drivers()
                assert len(conns) == 1 and await cm.health.probe(driver)
                await release_session(gateway.pool, driver.address, sid, "alice", timeout=5)
                assert gateway.pool.connections() == conns  # no connection of their own
            assert cm.health.calls is not gateway.pool  # the cluster manager outlives the gateway
            assert await cm.health.probe(driver)
        finally:
            await cm.close()
