"""An in-memory cluster provider for tests: drivers "start" instantly (or after a delay)."""

from __future__ import annotations

import asyncio
import itertools

from sparkgate.clusters.base import Driver, DriverSpec, DriverState
from sparkgate.errors import DriverStartError


class FakeProvider:
    name = "fake"

    def __init__(self, address: str = "127.0.0.1:1", start_delay: float = 0.0) -> None:
        self.address = address
        self.start_delay = start_delay
        self.started: list[Driver] = []
        self.stopped: list[Driver] = []
        self.fail_next_start = False
        self._ids = itertools.count(1)

    async def __aenter__(self) -> FakeProvider:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    async def start_driver(self, spec: DriverSpec) -> Driver:
        if self.start_delay:
            await asyncio.sleep(self.start_delay)
        if self.fail_next_start:
            self.fail_next_start = False
            raise DriverStartError("fake start failure")
        d = Driver(
            id=f"fake-{next(self._ids)}",
            address=self.address,
            provider=self.name,
            namespace=spec.namespace,
            state=DriverState.READY,
        )
        self.started.append(d)
        return d

    async def stop_driver(self, driver: Driver) -> None:
        driver.state = DriverState.DEAD
        self.stopped.append(driver)

    async def list_drivers(self) -> list[Driver]:
        return [d for d in self.started if d.state is not DriverState.DEAD]
