"""A driver killed with SIGKILL mid-session (issue 3): clear error fast, recovery, no leftovers.

Uses its own small platform (one warm driver, health probes on, h2 engine) so killing a driver
does not disturb the drivers the other e2e tests share.
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pyspark.sql
import pytest

from sparkgate.clusters.local import free_port, pid_alive
from sparkgate.config import load_settings
from sparkgate.platform import Platform
from tests.e2e.conftest import stop_all

pytestmark = pytest.mark.spark
T = TypeVar("T")


class PlatformThread:
    def __init__(self, state_dir: Path) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="failover-platform", daemon=True)
        self.thread.start()
        self.settings = load_settings(
            None,
            {},
            gateway={"host": "127.0.0.1", "port": free_port(), "engine": "h2"},
            admin={"enabled": False},
            pool={"size": 1},
            local={"max_drivers": 3},
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
