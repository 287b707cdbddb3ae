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
from sparkgate.errors import PermissionDenied, SessionLost, Unavailable
from sparkgate.gateway.affinity import Route
from sparkgate.gateway.affinity_redis import RedisAffinityStore
from sparkgate.testing.redis import TempRedis, TempSentinels


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
    (first, made_a), (second, made_b) = await asyncio.gather(a.create(route(sid, "d1")), b.create(route(sid, "d2")))
    assert first == second and made_a != made_b  # one placement made it; the other got it
    assert a.get(first.key) == b.get(first.key) == first


async def test_a_replica_loads_a_session_it_has_not_seen(
    replicas: tuple[RedisAffinityStore, RedisAffinityStore],
) -> None:
    a, b = replicas
    sid = str(uuid.uuid4())
    placed, _ = await a.create(route(sid))
    assert b.get(placed.key) is None  # the hot path never asks Redis
    assert await b.load(placed.key) == placed
    assert b.get(placed.key) == placed
    assert await b.load(("mallory", sid)) is None and b.users_of(sid) == {"alice"}  # someone else's id


async def test_every_replica_hears_why_a_session_was_dropped(
    replicas: tuple[RedisAffinityStore, RedisAffinityStore],
) -> None:
    a, b = replicas
    placed, _ = await a.create(route(str(uuid.uuid4())))
    assert await a.delete(placed.key, driver_id="elsewhere") is None  # only the route it names
    assert await a.delete(placed.key, driver_id="d1", lost="driver d1 died: exit 9", lost_ttl=60) == placed
    assert await b.load(placed.key) is None and b.lost(placed.key) == "driver d1 died: exit 9"
    with pytest.raises(SessionLost, match="exit 9"):  # and no gateway places it anew
        await b.create(placed)


async def test_a_session_id_is_one_users(replicas: tuple[RedisAffinityStore, RedisAffinityStore]) -> None:
    a, b = replicas
    sid = str(uuid.uuid4())
    await a.create(route(sid, user="alice"))
    with pytest.raises(PermissionDenied, match="another user"):
        await b.create(route(sid, user="mallory"))


async def test_a_copy_read_before_its_deletion_is_not_cached(
    replicas: tuple[RedisAffinityStore, RedisAffinityStore],
) -> None:
    a, b = replicas
    placed, _ = await a.create(route(str(uuid.uuid4())))
    raw = await b.redis.get(b._route_key(placed.key))  # b read it ...
    await a.delete(placed.key)  # ... a deleted it ...
    deadline = time.monotonic() + 5
    while placed.key not in b._deleted and time.monotonic() < deadline:
        await asyncio.sleep(0.02)  # ... b heard of the deletion ...
    assert b._cache(raw) is None and b.get(placed.key) is None  # ... and does not cache the old copy


async def test_a_redis_that_lost_its_data_gets_the_routes_back(
    replicas: tuple[RedisAffinityStore, RedisAffinityStore], redis_server: TempRedis
) -> None:
    a, b = replicas
    placed, _ = await a.create(route(str(uuid.uuid4())))
    redis_server.restart()  # empty
    assert a.get(placed.key) == placed  # calls of the session go on meanwhile
    await a.sweep(time.time() - 3600)  # the epoch is gone: a writes its routes back
    assert await b.load(placed.key) == placed


async def test_calls_of_a_known_session_send_no_command(
    replicas: tuple[RedisAffinityStore, RedisAffinityStore], redis_server: TempRedis
) -> None:
    a, _ = replicas
    placed, _ = await a.create(route(str(uuid.uuid4())))
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
    placed, _ = await a.create(route(str(uuid.uuid4())))
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
    idle = [
        (await a.create(Route("alice", str(uuid.uuid4()), "d1", "x", "fe", "prod", last_used=old)))[0] for _ in range(3)
    ]
    busy, _ = await a.create(Route("alice", str(uuid.uuid4()), "d1", "x", "fe", "prod", last_used=old))
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
        placed, _ = await a.create(route(str(uuid.uuid4())))
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


async def test_routes_acknowledged_before_a_sentinel_failover_survive_it(redis_server: TempRedis) -> None:
    # (its own Redis servers; redis_server only stands for "Redis is installed")
    primary = TempRedis()
    replica = TempRedis(replica_of=primary)
    with primary, replica, TempSentinels(primary) as sentinels:
        settings = StateSettings(
            backend="redis",
            sentinels=sentinels.addresses,
            master_name=sentinels.name,
            wait_replicas=1,
            wait_timeout_ms=2000,
            key_prefix=f"t{uuid.uuid4().hex[:8]}",
        )
        deadline = time.monotonic() + 30
        while sentinels.primary_port() != primary.port and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        async with RedisAffinityStore(settings) as a:
            while True:  # until the replica has caught up and acknowledges writes
                try:
                    placed, _ = await a.create(route(str(uuid.uuid4())))
                    break
                except Unavailable:
                    assert time.monotonic() < deadline, "the replica never acknowledged a write"
                    await asyncio.sleep(0.2)
            primary.stop()  # the primary dies; the Sentinels promote the replica
            while sentinels.primary_port() != replica.port and time.monotonic() < deadline + 30:
                await asyncio.sleep(0.2)
            assert sentinels.primary_port() == replica.port
            async with RedisAffinityStore(settings.model_copy(update={"wait_replicas": 0})) as b:
                while True:  # UNAVAILABLE (retry) until the Sentinels agree on the new primary
                    try:
                        loaded = await b.load(placed.key)
                        break
                    except Unavailable:
                        assert time.monotonic() < deadline + 30, "the Sentinels never settled"
                        await asyncio.sleep(0.2)
                assert loaded == placed  # acknowledged before: still there
                later, created = await b.create(route(str(uuid.uuid4())))  # the new primary takes writes
                assert created and b.get(later.key) == later


async def test_a_driver_one_replica_found_dead_is_announced_to_the_others(
    replicas: tuple[RedisAffinityStore, RedisAffinityStore],
) -> None:
    a, b = replicas
    heard: dict[str, list[tuple[str, str]]] = {"a": [], "b": []}
    a.on_driver_event = lambda driver, state: heard["a"].append((driver, state))
    b.on_driver_event = lambda driver, state: heard["b"].append((driver, state))
    await a.announce_driver("local-1", "dead")
    deadline = time.monotonic() + 5
    while not heard["b"] and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    assert heard == {"a": [], "b": [("local-1", "dead")]}  # (b probes it at once; a knew already)
