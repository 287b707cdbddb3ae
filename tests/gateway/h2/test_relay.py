"""The h2 relay's routing: calls of a placed session are routed at once, without a task."""

from __future__ import annotations

import uuid
from typing import Any

import grpc.aio
import pytest

from sparkgate.aio import TaskSupervisor
from sparkgate.connect import wire
from sparkgate.gateway.server import Gateway
from sparkgate.gateway.sessions import Forward

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


async def test_resolve_known_only_answers_placed_sessions_on_live_drivers(gateway: Gateway) -> None:
    router, sid = gateway.router, str(uuid.uuid4())
    assert router.resolve_known(wire.RequestIds(sid, "alice")) is None  # not placed yet
    assert router.resolve_known(wire.RequestIds("not-a-uuid", "alice")) is None  # resolve rejects it
    placed = await router.resolve("Config", ROUTE, wire.RequestIds(sid, "alice"), b"")
    assert isinstance(placed, Forward)
    known = router.resolve_known(wire.RequestIds(sid, "alice"))
    assert known is not None and known.driver is placed.driver and known.preamble is None
    known.driver.state = known.driver.state.DEAD
    assert router.resolve_known(wire.RequestIds(sid, "alice")) is None  # resolve reports the lost session
