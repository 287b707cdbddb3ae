"""Cluster lifecycle on real drivers (issue 3): many teams at once, and a driver killed mid-session.

Uses its own small platform (one warm driver, health probes on) so starting and killing
drivers does not disturb the drivers the other e2e tests share.
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import pyspark.sql
import pytest

from sparkgate.aio import free_port, pid_alive
from sparkgate.config import load_settings
from sparkgate.platform import Platform
from tests.e2e.conftest import stop_all

pytestmark = pytest.mark.spark
T = TypeVar("T")


class PlatformThread:
    def __init__(self, state_dir: Path) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="lifecycle-platform", daemon=True)
        self.thread.start()
        self.settings = load_settings(
            None,
            {},
            gateway={"host": "127.0.0.1", "port": free_port()},
            admin={"enabled": False},
            runner={"enabled": False},
            pool={"size": 1},
            local={"max_drivers": 5},
            state_dir=state_dir,
        )
        self.platform = Platform(self.settings)
        self.run(self.platform.__aenter__())
        self.run(self.platform.clusters.wait_pool_ready(timeout=240), timeout=250)

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 120) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.run(self.platform.__aexit__(None, None, None))
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@pytest.fixture(scope="module")
def failover_platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PlatformThread]:
    p = PlatformThread(tmp_path_factory.mktemp("failover"))
    try:
        yield p
    finally:
        p.close()


def test_twenty_sessions_from_four_teams_spread_by_policy(failover_platform: PlatformThread) -> None:
    p = failover_platform
    base = f"sc://127.0.0.1:{p.platform.gateway.port}/;x-doordash-environment=local;x-doordash-team="
    teams = [f"team{i}" for i in range(4)]
    jobs = [(team, n) for team in teams for n in range(5)]

    def run(job: tuple[str, int]) -> tuple[str, str, int]:
        team, n = job
        spark = pyspark.sql.SparkSession.builder.remote(base + team).create()
        try:
            got = spark.range(0, 10_000 * (n + 1)).selectExpr("sum(id) AS s").first().s
            return team, spark.client._session_id, got
        finally:
            # Only this session: stop_all() would also stop the process-wide default/active
            # session, which may be another thread's session mid-query.
            spark.stop()

    with ThreadPoolExecutor(max_workers=20) as pool:
        results = list(pool.map(run, jobs))
    stop_all([])
    for (_team, n), (_, _, got) in zip(jobs, results, strict=True):
        m = 10_000 * (n + 1)
        assert got == m * (m - 1) // 2
    # Placement by policy: each team's sessions shared its namespace's driver (5 <= sessions_per_driver),
    # and no two teams shared a driver.
    calls = p.platform.clusters.drivers()
    by_namespace = Counter(d.namespace for d in calls if d.namespace.startswith("sjns-team"))
    assert sorted(by_namespace) == [f"sjns-team{i}-local" for i in range(4)]
    assert all(count == 1 for count in by_namespace.values())

    # With their sessions released, idle team drivers are stopped for good (TTL shortened here).
    cm = p.platform.clusters
    team_drivers = [d for d in cm.drivers() if d.namespace.startswith("sjns-team")]

    async def expire() -> list[object]:
        cm.driver_idle_ttl = 0.0
        try:
            return list(await cm.expire_idle())
        finally:
            cm.driver_idle_ttl = 900.0

    assert {d.id for d in p.run(expire())} == {d.id for d in team_drivers}  # type: ignore[attr-defined]
    assert not any(d.pid is not None and pid_alive(d.pid) for d in team_drivers)


def test_killed_driver_gives_session_changed_quickly_and_platform_recovers(
    failover_platform: PlatformThread,
) -> None:
    p = failover_platform
    url = f"sc://127.0.0.1:{p.platform.gateway.port}/;x-doordash-team=fo;x-doordash-environment=local"
    spark = pyspark.sql.SparkSession.builder.remote(url).create()
    try:
        assert spark.sql("SELECT 41 + 1 AS x").first().x == 42
        (route,) = p.platform.gateway.store.all()
        driver = p.platform.clusters.get(route.driver_id)
        assert driver is not None and driver.pid is not None

        os.kill(driver.pid, signal.SIGKILL)
        t0 = time.monotonic()
        with pytest.raises(Exception) as err:
            spark.sql("SELECT 1").collect()
        elapsed = time.monotonic() - t0
        assert "SESSION_CHANGED" in str(err.value), str(err.value)
        assert elapsed < 2.0, f"the client waited {elapsed:.1f}s for the error"
        assert p.platform.gateway.store.all() == []  # the dead driver's routes are gone
        assert not pid_alive(driver.pid)
    finally:
        stop_all([spark])

    # A new session works (on the refilled pool's driver), and the pool gets back to target.
    spark2 = pyspark.sql.SparkSession.builder.remote(url).create()
    try:
        assert spark2.sql("SELECT 7 AS x").first().x == 7
        (route2,) = p.platform.gateway.store.all()
        assert route2.driver_id != route.driver_id
    finally:
        stop_all([spark2])
    p.run(p.platform.clusters.wait_pool_ready(timeout=240), timeout=250)
    assert driver.id in p.platform.clusters.dead
