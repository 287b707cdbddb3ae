"""Session routes in a real Redis (Debian's redis-server, started once per test run), shared by
stores standing in for gateway replicas."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from sparkgate.config import StateSettings
from sparkgate.errors import Unavailable
from sparkgate.gateway.affinity import Route
from sparkgate.gateway.affinity_redis import RedisAffinityStore
from sparkgate.testing.redis import TempRedis


@pytest.fixture
def settings(redis_server: TempRedis) -> StateSettings:
    # A prefix of its own per test: the tests share one server.
    return StateSettings(backend="redis", redis_url=redis_server.url, key_prefix=f"t{uuid.uuid4().hex[:8]}")


@pytest.fixture
async def replicas(settings: StateSettings) -> AsyncIterator[tuple[RedisAffinityStore, RedisAffinityStore]]:
    async with RedisAffinityStore(settings) as a, RedisAffinityStore(settings) as b:
        yield a, b


def route(session: str, driver: str = "d1", user: str = "alice") -> Route:
    return Route(user, session, driver, "127.0.0.1:1", "fe", "prod", owner=user)


async def test_two_replicas_placing_one_session_agree_on_its_driver(
    replicas: tuple[RedisAffinityStore, RedisAffinityStore],
) -> None:
    a, b = replicas
    sid = str(uuid.uuid4())
    first, second = await asyncio.gather(a.create(route(sid, "d1")), b.create(route(sid, "d2")))
    assert first.driver_id == second.driver_id
    assert a.get(first.key) == b.get(first.key) == first


async def test_a_replica_loads_a_session_it_has_not_seen(
    replicas: tuple[RedisAffinityStore, RedisAffinityStore],
) -> None:
    a, b = replicas
    sid = str(uuid.uuid4())
    placed = await a.create(route(sid))
    assert b.get(placed.key) is None  # the hot path never asks Redis
    assert await b.load(placed.key) == placed
    assert b.get(placed.key) == placed
    assert await b.load(("mallory", sid)) is None and b.users_of(sid) == {"alice"}  # someone else's id


async def test_every_replica_hears_why_a_session_was_dropped(
    replicas: tuple[RedisAffinityStore, RedisAffinityStore],
) -> None:
    a, b = replicas
    placed = await a.create(route(str(uuid.uuid4())))
    await a.remember_lost([(placed.key, "driver d1 died: exit 9")], ttl=60)
    await a.delete(placed.key)
    assert await b.load(placed.key) is None and b.lost(placed.key) == "driver d1 died: exit 9"


async def test_calls_of_a_known_session_send_no_command(
    replicas: tuple[RedisAffinityStore, RedisAffinityStore], redis_server: TempRedis
) -> None:
    a, _ = replicas
    placed = await a.create(route(str(uuid.uuid4())))
    client = aioredis.Redis.from_url(redis_server.url, decode_responses=True)
    before, sent = await client.info("commandstats"), a.commands
    for _ in range(1000):
        assert a.get(placed.key) == placed
        a.touch(placed.key, time.time())
    after = await client.info("commandstats")
    await client.aclose()
    assert a.commands == sent
    calls = {k: v["calls"] for k, v in after.items()}
    calls_before = {k: v["calls"] for k, v in before.items()}
    # Only the INFO command itself ran meanwhile (and the replicas' blocking stream reads).
    assert {k for k in calls if calls[k] != calls_before.get(k)} <= {"cmdstat_info", "cmdstat_xread"}


async def test_a_deleted_route_leaves_every_replicas_cache(
    replicas: tuple[RedisAffinityStore, RedisAffinityStore],
) -> None:
    a, b = replicas
    placed = await a.create(route(str(uuid.uuid4())))
    await b.load(placed.key)
    assert await a.delete(placed.key) == placed
    deadline = time.monotonic() + 5
    while b.get(placed.key) is not None and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert b.get(placed.key) is None and await b.load(placed.key) is None


async def test_the_sweep_drops_routes_idle_on_every_replica_once(
    replicas: tuple[RedisAffinityStore, RedisAffinityStore],
) -> None:
    a, b = replicas
    old = time.time() - 100
    idle = [await a.create(Route("alice", str(uuid.uuid4()), "d1", "x", "fe", "prod", last_used=old)) for _ in range(3)]
    busy = await a.create(Route("alice", str(uuid.uuid4()), "d1", "x", "fe", "prod", last_used=old))
    await b.load(busy.key)
    b.touch(busy.key, time.time())  # used through the other replica
    assert await b.sweep(old - 1) == []  # (tells Redis of its use; nothing that old to drop)
    dropped_a, dropped_b = await asyncio.gather(a.sweep(time.time() - 50), b.sweep(time.time() - 50))
    dropped = sorted(r.session_id for r in dropped_a + dropped_b)  # each once, by one replica or the other
    assert dropped == sorted(r.session_id for r in idle)
    assert await b.load(busy.key) is not None
    assert all(a.get(r.key) is None for r in idle)


async def test_without_redis_known_sessions_go_on_and_the_rest_is_unavailable(
    settings: StateSettings, redis_server: TempRedis
) -> None:
    async with RedisAffinityStore(settings.model_copy(update={"timeout_seconds": 0.5})) as a:
        placed = await a.create(route(str(uuid.uuid4())))
        redis_server.pause()
        try:
            assert a.get(placed.key) == placed  # no Redis needed
            with pytest.raises(Unavailable, match="did not answer") as err:
                await a.load(("alice", str(uuid.uuid4())))
            assert err.value.retry_after_seconds
            with pytest.raises(Unavailable):
                await a.create(route(str(uuid.uuid4())))
            assert await a.sweep(time.time()) == []  # skipped, not failed
        finally:
            redis_server.resume()
