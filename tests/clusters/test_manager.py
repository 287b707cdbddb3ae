from __future__ import annotations

import asyncio

import pytest

from sparkgate.clusters.base import POOL_NAMESPACE
from sparkgate.clusters.manager import ClusterManager
from sparkgate.config import QuotaSettings
from sparkgate.errors import ResourceExhausted
from sparkgate.testing.fake_provider import FakeProvider


async def test_warm_driver_is_claimed_then_pool_refills() -> None:
    p = FakeProvider()
    cm = ClusterManager(p, pool_size=1, max_drivers=4)
    await cm.start()
    await cm.wait_pool_ready(timeout=5)
    d = await cm.acquire("fe", "prod")
    assert d.namespace == "sjns-fe-prod"
    await cm.wait_pool_ready(timeout=5)
    assert len(cm.warm()) == 1 and cm.warm()[0] is not d
    await cm.close()
    assert all(x.state.value == "dead" for x in p.started)


async def test_same_namespace_reuses_least_loaded_driver() -> None:
    cm = ClusterManager(FakeProvider(), pool_size=0, max_drivers=4)
    await cm.start()
    d1 = await cm.acquire("fe", "prod")
    cm.attach(d1)
    d2 = await cm.acquire("fe", "prod")
    assert d2 is d1  # no warm driver: the namespace's running driver is used
    other = await cm.acquire("ds", "prod")
    assert other is not d1
    await cm.close()


async def test_concurrent_new_sessions_start_one_driver() -> None:
    p = FakeProvider(start_delay=0.1)
    cm = ClusterManager(p, pool_size=0, max_drivers=4)
    await cm.start()
    drivers = await asyncio.gather(*(cm.acquire("fe", "test") for _ in range(5)))
    assert len({d.id for d in drivers}) == 1 and len(p.started) == 1
    await cm.close()


async def test_driver_cap() -> None:
    cm = ClusterManager(FakeProvider(), pool_size=0, max_drivers=1)
    await cm.start()
    await cm.acquire("a", "prod")
    with pytest.raises(ResourceExhausted, match="max_drivers=1"):
        await cm.acquire("b", "prod")
    await cm.close()


async def test_restart_adopts_running_drivers() -> None:
    p = FakeProvider()
    cm = ClusterManager(p, pool_size=1)
    await cm.start()
    await cm.wait_pool_ready(timeout=5)
    await cm.close(stop_drivers=False)
    cm2 = ClusterManager(p, pool_size=1)
    await cm2.start()
    await cm2.wait_pool_ready(timeout=5)
    assert len(p.started) == 1 and cm2.warm()[0].namespace == POOL_NAMESPACE
    await cm2.close()


async def test_namespace_driver_with_room_before_warm_pool() -> None:
    p = FakeProvider()
    cm = ClusterManager(p, pool_size=1, max_drivers=4, sessions_per_driver=2)
    await cm.start()
    await cm.wait_pool_ready(timeout=5)
    d1 = await cm.acquire("fe", "prod")
    cm.attach(d1)
    await cm.wait_pool_ready(timeout=5)
    d2 = await cm.acquire("fe", "prod")  # d1 has room: the warm driver stays in the pool
    cm.attach(d2)
    assert d2 is d1 and len(cm.warm()) == 1
    d3 = await cm.acquire("fe", "prod")  # d1 is full: claim the warm one
    assert d3 is not d1 and d3.namespace == "sjns-fe-prod"
    await cm.close()


async def test_full_platform_shares_namespace_drivers() -> None:
    cm = ClusterManager(FakeProvider(), pool_size=0, max_drivers=1, sessions_per_driver=1)
    await cm.start()
    d = await cm.acquire("fe", "prod")
    cm.attach(d)
    assert await cm.acquire("fe", "prod") is d


async def test_pool_refill_counts_against_max_drivers() -> None:
    p = FakeProvider(start_delay=0.2)
    cm = ClusterManager(p, pool_size=1, max_drivers=1)
    await cm.start()  # the refill is starting the only driver allowed
    await asyncio.sleep(0.05)
    with pytest.raises(ResourceExhausted):
        await cm.acquire("fe", "prod")
    await cm.close()


async def test_idle_team_drivers_are_stopped_pool_stays() -> None:
    p = FakeProvider()
    cm = ClusterManager(p, pool_size=1, driver_idle_ttl=0.05)
    await cm.start()
    await cm.wait_pool_ready(timeout=5)
    busy = await cm.acquire("fe", "prod")
    cm.attach(busy)
    await cm.wait_pool_ready(timeout=5)
    idle = await cm.acquire("ds", "prod")
    await asyncio.sleep(0.2)  # the periodic sweep runs every ttl/4
    assert idle in p.stopped and cm.get(idle.id) is None
    assert cm.get(busy.id) is busy  # it has a session
    await cm.wait_pool_ready(timeout=5)
    assert len(cm.warm()) == 1
    await cm.close()


async def test_namespace_quotas() -> None:
    quotas = QuotaSettings(max_drivers_per_namespace=1, max_sessions_per_namespace=3)
    cm = ClusterManager(FakeProvider(), pool_size=0, sessions_per_driver=1, quotas=quotas)
    await cm.start()
    drivers = []
    for _ in range(3):
        d = await cm.acquire("fe", "prod")
        cm.attach(d)
        drivers.append(d)
    assert len({d.id for d in drivers}) == 1  # one driver allowed: shared beyond its room
    with pytest.raises(ResourceExhausted, match="max_sessions_per_namespace=3"):
        await cm.acquire("fe", "prod")
    assert (await cm.acquire("ds", "prod")) is not drivers[0]  # other teams are not affected
    await cm.close()
