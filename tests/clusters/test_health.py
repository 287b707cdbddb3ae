"""Health probes against the fake Spark Connect backend (real gRPC on loopback)."""

from __future__ import annotations

import asyncio

from sparkgate.aio import free_port
from sparkgate.clusters.base import Driver, DriverState
from sparkgate.clusters.health import HealthChecker
from sparkgate.clusters.manager import ClusterManager
from sparkgate.config import HealthSettings
from sparkgate.testing.fake_backend import FakeSparkConnectServer
from sparkgate.testing.fake_provider import FakeProvider

FAST = HealthSettings(interval_seconds=0.05, timeout_seconds=0.5, failures_to_dead=2, successes_to_ready=2)


def _driver(address: str) -> Driver:
    return Driver(id="d1", address=address, provider="test", state=DriverState.READY)


async def test_probe_is_a_release_of_an_unknown_session() -> None:
    dead: list[str] = []

    async def on_dead(d: Driver, why: str) -> None:
        dead.append(why)

    async with FakeSparkConnectServer() as fake:
        hc = HealthChecker(FAST, on_dead)
        assert await hc.probe(_driver(fake.address))
        (call,) = fake.calls
        assert call.method == "ReleaseSession"  # creates no session on a real driver
        await hc.close()
    assert dead == []


async def test_failures_make_suspect_then_dead_and_recovery_clears() -> None:
    dead: list[str] = []

    async def on_dead(d: Driver, why: str) -> None:
        dead.append(why)

    hc = HealthChecker(FAST, on_dead)
    d = _driver(f"127.0.0.1:{free_port()}")  # nothing listens there
    assert not await hc.probe(d)
    assert hc.suspect(d) and d.state is DriverState.READY
    await hc.observe(d, ok=True)
    await hc.observe(d, ok=True)
    assert not hc.suspect(d)
    await hc.probe(d)
    await hc.probe(d)
    assert d.state is DriverState.DEAD and len(dead) == 1 and "UNAVAILABLE" in dead[0]
    await hc.close()


async def test_manager_drops_dead_driver_notifies_and_refills() -> None:
    p = FakeProvider(address=f"127.0.0.1:{free_port()}")  # drivers that never answer
    cm = ClusterManager(p, pool_size=1, health=FAST)
    seen: list[str] = []

    async def listener(d: Driver, why: str) -> None:
        seen.append(d.id)

    cm.on_driver_dead(listener)
    await cm.start()
    await asyncio.sleep(0.5)
    assert seen and seen[0] == "fake-1"
    assert cm.get("fake-1") is None and "fake-1" in cm.dead
    assert any(d.id == "fake-1" for d in p.stopped)  # the provider was told to clean it up
    assert len(p.started) > 1  # the pool refilled
    await cm.close()


async def test_provider_exit_report_kills_at_once() -> None:
    p = FakeProvider()
    cm = ClusterManager(p, pool_size=0, health=HealthSettings(interval_seconds=3600))
    await cm.start()
    d = await cm.acquire("fe", "prod")
    cm._driver_exited(d.id, -9)
    await asyncio.sleep(0.05)
    assert d.state is DriverState.DEAD and cm.get(d.id) is None
    assert "code -9" in cm.dead[d.id]
    await cm.close()
