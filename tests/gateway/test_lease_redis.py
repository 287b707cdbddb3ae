"""The fleet in Redis: one gateway (the lease holder) fills the pool, another takes over when it
stops; sessions per driver counted over every replica; one driver start per namespace."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator

import pytest

from sparkgate.clusters.manager import ClusterManager
from sparkgate.config import StateSettings
from sparkgate.errors import ResourceExhausted, Unavailable
from sparkgate.gateway.affinity_redis import RedisAffinityStore
from sparkgate.gateway.lease_redis import RedisFleet, RedisLease
from sparkgate.testing.fake_provider import FakeProvider
from sparkgate.testing.redis import TempRedis
from tests.clusters.test_manager import SharedRecords
from tests.gateway.test_affinity_redis import route


@pytest.fixture
def settings(redis_server: TempRedis) -> StateSettings:
    return StateSettings(backend="redis", redis_url=redis_server.url, key_prefix=f"t{uuid.uuid4().hex[:8]}")


@pytest.fixture
async def store(settings: StateSettings) -> AsyncIterator[RedisAffinityStore]:
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
    await leader.release()  # not the holder: changes nothing
    await leader.campaign()
    assert not leader.is_leader()
    await other.release()  # the holder leaves: the lease is free at once
    await leader.campaign()
    assert leader.is_leader() and leader.token == first + 2  # (still a higher token)


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


# -- what the gateways share about the drivers ----------------------------------------------


async def test_sessions_per_driver_are_counted_over_every_replica(settings: StateSettings) -> None:
    async with RedisAffinityStore(settings) as a, RedisAffinityStore(settings) as b:
        fleet = RedisFleet(a, "a")
        on_d1 = [route(str(uuid.uuid4())) for _ in range(2)]
        await a.create(on_d1[0])
        await b.create(on_d1[1])  # through another replica
        await b.create(route(str(uuid.uuid4()), driver="d2"))
        assert await fleet.sessions_on(["d1", "d2", "d3"]) == {"d1": 2, "d2": 1, "d3": 0}
        await b.delete(on_d1[0].key)
        assert (await fleet.sessions_on(["d1"])) == {"d1": 1}
        await a.sweep(time.time() + 3600)  # (every route idle)
        assert await fleet.sessions_on(["d1", "d2"]) == {"d1": 0, "d2": 0}


async def test_one_gateway_at_a_time_starts_a_driver_for_a_namespace(store: RedisAffinityStore) -> None:
    a, b = RedisFleet(store, "a"), RedisFleet(store, "b")
    assert await a.lock_start("sjns-fe-prod", 5)
    assert not await b.lock_start("sjns-fe-prod", 5)  # b waits for a's driver
    assert await b.lock_start("sjns-ds-prod", 5)  # another namespace: free
    await b.unlock_start("sjns-fe-prod")  # not b's: changes nothing
    assert not await b.lock_start("sjns-fe-prod", 5)
    await a.unlock_start("sjns-fe-prod")
    assert await b.lock_start("sjns-fe-prod", 5)
    assert await a.lock_start("sjns-ml-prod", 0.2)
    await asyncio.sleep(0.3)  # a died while starting: its lock runs out
    assert await b.lock_start("sjns-ml-prod", 5)


async def test_two_gateways_placing_a_new_team_start_one_driver(store: RedisAffinityStore) -> None:
    p = SharedRecords(start_delay=0.5)
    managers = [ClusterManager(p, pool_size=0, max_drivers=4) for _ in range(2)]
    for name, cm in zip("ab", managers, strict=True):
        cm.fleet = RedisFleet(store, name)
        await cm.start()
    a, b = await asyncio.gather(managers[0].acquire("fe", "prod"), managers[1].acquire("fe", "prod"))
    assert a.id == b.id and len(p.started) == 1  # one started it, the other waited and found it
    for cm in managers:
        await cm.close(stop_drivers=False)


async def test_a_driver_idle_here_but_used_through_another_replica_is_not_stopped(settings: StateSettings) -> None:
    async with RedisAffinityStore(settings) as a, RedisAffinityStore(settings) as b:
        p = FakeProvider()
        cm = ClusterManager(p, pool_size=0, driver_idle_ttl=60.0)
        cm.fleet, cm.leadership = RedisFleet(a, "a"), RedisLease(a, "a")
        await cm.leadership.campaign()
        await cm.start()
        d = await cm.acquire("fe", "prod")
        await b.create(route(str(uuid.uuid4()), driver=d.id))  # a session through replica b
        d.last_used = 0.0  # idle for long, by this gateway's count
        assert await cm.expire_idle() == [] and cm.get(d.id) is d
        await b.sweep(time.time() + 3600)  # it ends
        d.last_used = 0.0
        assert await cm.expire_idle() == [d]
        await cm.close()


async def test_a_deposed_leader_stops_nothing_and_no_session_goes_to_a_driver_being_stopped(
    settings: StateSettings,
) -> None:
    async with RedisAffinityStore(settings) as a, RedisAffinityStore(settings) as b, RedisAffinityStore(settings) as c:
        events: list[tuple[str, str]] = []
        c.on_driver_event = lambda driver, state: events.append((driver, state))
        old, new = RedisLease(a, "old", lease_seconds=0.5), RedisLease(b, "new", lease_seconds=0.5)
        await old.campaign()
        deposed = old.token
        await asyncio.sleep(0.6)  # the old leader was paused past its lease
        await new.campaign()
        assert new.token > deposed
        fleet = RedisFleet(a, "old")
        assert await fleet.mark_stopping(["d1"], deposed) == []  # its token is not the lease's now
        await b.create(route(str(uuid.uuid4()), driver="d2"))
        assert await RedisFleet(b, "new").mark_stopping(["d1", "d2"], new.token) == ["d1"]  # d2 has a session
        # Nothing is placed on a driver marked as being stopped, through any replica.
        with pytest.raises(Unavailable, match="d1 is being stopped"):
            await a.create(route(str(uuid.uuid4()), driver="d1"))
        assert await fleet.sessions_on(["d1"]) == {"d1": 0}
        # The other replicas hear of it on the event stream (and take no new session there).
        deadline = time.monotonic() + 5
        while ("d1", "stopping") not in events and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert ("d1", "stopping") in events


async def test_a_driver_another_gateway_is_stopping_takes_no_new_session() -> None:
    p = SharedRecords()
    cm = ClusterManager(p, pool_size=0, max_drivers=4)
    await cm.start()
    d = await cm.acquire("fe", "prod")
    cm.drain(d.id, "another gateway is stopping it")
    e = await cm.acquire("fe", "prod")
    assert e.id != d.id and cm.get(d.id) is d  # (gone once its process is)
    await cm.close(stop_drivers=False)


async def test_room_is_made_only_with_a_driver_idle_over_every_gateway(settings: StateSettings) -> None:
    async with RedisAffinityStore(settings) as a, RedisAffinityStore(settings) as b:
        p = FakeProvider()
        cm = ClusterManager(p, pool_size=0, max_drivers=1)
        cm.fleet = RedisFleet(a, "a")
        await cm.start()
        d = await cm.acquire("fe", "prod")
        d.last_used = 0.0  # idle here for long
        await b.create(route(str(uuid.uuid4()), driver=d.id))  # placed through replica b meanwhile
        with pytest.raises(ResourceExhausted, match="max_drivers=1"):
            await cm.acquire("ds", "prod")
        assert cm.get(d.id) is d and d not in p.stopped
        await b.sweep(time.time() + 3600)  # that session ends
        e = await cm.acquire("ds", "prod")
        assert d in p.stopped and e.namespace == "sjns-ds-prod"
        await cm.close()
