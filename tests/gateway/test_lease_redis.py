"""The fleet leader's lease in Redis: one gateway fills the pool, another takes over when it stops."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator

import pytest

from sparkgate.clusters.manager import ClusterManager
from sparkgate.config import StateSettings
from sparkgate.gateway.affinity_redis import RedisAffinityStore
from sparkgate.gateway.lease_redis import RedisLease
from sparkgate.testing.fake_provider import FakeProvider
from sparkgate.testing.redis import TempRedis


@pytest.fixture
async def store(redis_server: TempRedis) -> AsyncIterator[RedisAffinityStore]:
    settings = StateSettings(backend="redis", redis_url=redis_server.url, key_prefix=f"t{uuid.uuid4().hex[:8]}")
    async with RedisAffinityStore(settings) as s:
        yield s


async def test_one_leader_and_a_takeover_when_it_stops_renewing(store: RedisAffinityStore) -> None:
    a, b = RedisLease(store, "a", lease_seconds=1.0), RedisLease(store, "b", lease_seconds=1.0)
    await asyncio.gather(a.campaign(), b.campaign())
    assert [a.is_leader(), b.is_leader()].count(True) == 1
    leader, other = (a, b) if a.is_leader() else (b, a)
    first = leader.token
    await leader.campaign()  # renewing keeps it
    assert leader.is_leader() and leader.token == first
    # The leader stops (SIGSTOP, a lost network): it renews no more.
    t0 = time.monotonic()
    while not other.is_leader():
        await other.campaign()
        await asyncio.sleep(0.1)
        assert time.monotonic() - t0 < 15, "no takeover"
    assert other.token > first  # a higher fencing token
    assert not leader.is_leader()  # by its own clock, before the other could take over


async def test_only_the_leader_fills_the_warm_pool(store: RedisAffinityStore) -> None:
    providers = [FakeProvider(), FakeProvider()]
    managers = [ClusterManager(p, pool_size=1) for p in providers]
    leases = []
    for name, cm in zip("ab", managers, strict=True):
        lease = RedisLease(store, name, lease_seconds=1.0, on_elected=cm.refill_pool)
        cm.leadership = lease
        leases.append(lease)
    for cm in managers:
        await cm.start()  # not elected yet: neither fills the pool
    await asyncio.sleep(0.1)
    assert [len(p.started) for p in providers] == [0, 0]
    for lease in leases:
        await lease.campaign()
    await asyncio.sleep(0.2)
    assert sorted(len(p.started) for p in providers) == [0, 1]  # the elected one did
    for cm in managers:
        await cm.close()
