"""Gateway replicas sharing session routes in Redis: any replica serves any session, and one
replica gone takes no session with it (a fake Spark Connect backend, real gRPC, real Redis)."""

from __future__ import annotations

import uuid
from contextlib import AbstractAsyncContextManager
from pathlib import Path

import grpc.aio

from sparkgate.connect.status import retry_after
from sparkgate.gateway.server import Gateway
from sparkgate.testing.fake_backend import FakeSparkConnectServer
from sparkgate.testing.redis import TempRedis
from tests.gateway.h2.conftest import gateway_to
from tests.gateway.test_relay import ROUTE, SVC, request


def replica(backend: str, redis_url: str, prefix: str, state_dir: Path) -> AbstractAsyncContextManager[Gateway]:
    return gateway_to(backend, state_dir, state={"backend": "redis", "redis_url": redis_url, "key_prefix": prefix})


async def test_any_replica_serves_any_session_and_one_gone_loses_none(
    redis_server: TempRedis,
    tmp_path: Path,
) -> None:
    prefix = f"t{uuid.uuid4().hex[:8]}"
    async with FakeSparkConnectServer(chunks=2, chunk_bytes=1024) as fake:
        async with (
            replica(fake.address, redis_server.url, prefix, tmp_path / "a") as a,
            replica(fake.address, redis_server.url, prefix, tmp_path / "b") as b,
        ):
            sid = str(uuid.uuid4())
            async with grpc.aio.insecure_channel(f"127.0.0.1:{a.port}") as ch:
                await ch.unary_unary(SVC + "Config")(request(sid), metadata=ROUTE)  # placed through a
            placed = a.store.get(("alice", sid))
            assert placed is not None and b.store.get(("alice", sid)) is None
            await a._heartbeat()
            assert {r["id"] for r in a.replicas} == {a.replica_id, b.replica_id}  # each sees both
            await a.stop(0)  # a is gone: its client reconnects through b
            async with grpc.aio.insecure_channel(f"127.0.0.1:{b.port}") as ch:
                chunks = [m async for m in ch.unary_stream(SVC + "ExecutePlan")(request(sid))]  # no routing headers
                assert len(chunks) >= 2
                other = request(sid, user="mallory")
                try:
                    await ch.unary_unary(SVC + "Config")(other, metadata=ROUTE)
                    raise AssertionError("another user's session id was accepted")
                except grpc.aio.AioRpcError as err:
                    assert err.code() is grpc.StatusCode.PERMISSION_DENIED
            assert b.store.get(("alice", sid)) == placed  # the same route, not a new placement
            await b._heartbeat()  # (every few seconds) a, stopped, has not announced itself since
            assert {r["id"] for r in b.replicas} == {a.replica_id, b.replica_id}  # until 3 beats are missed


async def test_without_redis_placed_sessions_go_on_and_new_ones_are_told_to_retry(
    redis_server: TempRedis,
    tmp_path: Path,
) -> None:
    state = {"backend": "redis", "redis_url": redis_server.url, "key_prefix": f"t{uuid.uuid4().hex[:8]}"}
    async with (
        FakeSparkConnectServer(chunks=2, chunk_bytes=1024) as fake,
        gateway_to(fake.address, tmp_path, state={**state, "timeout_seconds": 0.5}) as gw,
        grpc.aio.insecure_channel(f"127.0.0.1:{gw.port}") as ch,
    ):
        placed = str(uuid.uuid4())
        await ch.unary_unary(SVC + "Config")(request(placed), metadata=ROUTE)
        redis_server.pause()  # Redis stops answering
        try:
            assert not await gw.store.reachable()  # (/readyz reports it, and stays ready: see below)
            chunks = [m async for m in ch.unary_stream(SVC + "ExecutePlan")(request(placed))]
            assert len(chunks) >= 2  # the placed session needs nothing from Redis
            try:
                await ch.unary_unary(SVC + "Config")(request(str(uuid.uuid4())), metadata=ROUTE)
                raise AssertionError("a new session was placed without Redis")
            except grpc.aio.AioRpcError as err:
                assert err.code() is grpc.StatusCode.UNAVAILABLE and "did not answer" in (err.details() or "")
                assert retry_after(err.trailing_metadata()) is not None  # RetryInfo: when to retry
        finally:
            redis_server.resume()
        assert await gw.store.reachable()


async def test_with_exact_limits_a_user_is_counted_over_every_replica(
    redis_server: TempRedis,
    tmp_path: Path,
) -> None:
    state = {"backend": "redis", "redis_url": redis_server.url, "key_prefix": f"t{uuid.uuid4().hex[:8]}"}
    limits = {"mode": "exact", "per_user_rps": 0.2, "per_user_burst": 4}
    async with (
        FakeSparkConnectServer(chunks=1, chunk_bytes=64) as fake,
        gateway_to(fake.address, tmp_path / "a", state=state, rate_limits=limits) as a,
        gateway_to(fake.address, tmp_path / "b", state=state, rate_limits=limits) as b,
        grpc.aio.insecure_channel(f"127.0.0.1:{a.port}") as to_a,
        grpc.aio.insecure_channel(f"127.0.0.1:{b.port}") as to_b,
    ):
        sid = str(uuid.uuid4())
        await to_a.unary_unary(SVC + "Config")(request(sid), metadata=ROUTE)  # (placed: counted by a alone)
        for ch in (to_b, to_a, to_b, to_a):  # the user's burst of 4, over both replicas
            await ch.unary_unary(SVC + "Config")(request(sid), metadata=ROUTE)
        try:
            await to_b.unary_unary(SVC + "Config")(request(sid), metadata=ROUTE)
            raise AssertionError("a call beyond the burst of 4 was admitted")
        except grpc.aio.AioRpcError as err:
            assert err.code() is grpc.StatusCode.RESOURCE_EXHAUSTED and "every gateway" in (err.details() or "")
            assert retry_after(err.trailing_metadata()) is not None
