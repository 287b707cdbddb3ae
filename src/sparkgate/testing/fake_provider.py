"""An in-memory cluster provider for tests: drivers "start" instantly (or after a delay)."""

from __future__ import annotations

import asyncio
import itertools

from sparkgate.clusters.base import Driver, DriverSpec, DriverState, ProviderBase
from sparkgate.errors import DriverStartError


class FakeProvider(ProviderBase):
    name = "fake"

    def __init__(
        self,
        address: str = "127.0.0.1:1",
        start_delay: float = 0.0,
        addresses: list[str] | None = None,
        stop_delay: float = 0.0,
    ) -> None:
        self.address = address
        #: The token every started driver requires (like ``local.require_token``).
        self.token: str | None = None
        #: Addresses handed to the next started drivers, in order (then ``address``).
        self.addresses = list(addresses or [])
        self.start_delay = start_delay
        #: Seconds a stop takes; meanwhile the driver is still listed as ready (a process exiting).
        self.stop_delay = stop_delay
        self.started: list[Driver] = []
        self.stopped: list[Driver] = []
        self.vanished = []
        self.fail_next_start = False
        #: Starts still to fail (a crash-looping driver); each failure says ``fake start failure``.
        self.fail_starts = 0
        #: Every spec asked for, in order (failed starts included).
        self.specs: list[DriverSpec] = []
        self._ids = itertools.count(1)
        #: Warm drivers' claims by driver id, one record for every manager using this provider (as
        #: the local provider's claim files are for gateways sharing a state directory).
        self.claims: dict[str, str] = {}
        #: Seconds a claim takes (a write to shared storage).
        self.claim_delay = 0.0

    async def __aenter__(self) -> FakeProvider:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    async def start_driver(self, spec: DriverSpec) -> Driver:
        if self.start_delay:
            await asyncio.sleep(self.start_delay)
        self.specs.append(spec)
        if self.fail_next_start or self.fail_starts > 0:
            self.fail_next_start = False
            self.fail_starts = max(0, self.fail_starts - 1)
            raise DriverStartError("fake start failure")
        d = Driver(
            id=f"fake-{next(self._ids)}",
            address=self.addresses.pop(0) if self.addresses else self.address,
            provider=self.name,
            namespace=spec.namespace,
            state=DriverState.READY,
            profile=spec.profile,
            token=self.token,
            fingerprint=spec.fingerprint(),
        )
        self.started.append(d)
        return d

    async def claim(self, driver: Driver, namespace: str) -> str:
        if self.claim_delay:
            await asyncio.sleep(self.claim_delay)
        return self.claims.setdefault(driver.id, namespace)

    async def stop_driver(self, driver: Driver) -> None:
        if self.stop_delay:
            await asyncio.sleep(self.stop_delay)
        driver.state = DriverState.DEAD
        self.stopped.append(driver)

    async def list_drivers(self) -> list[Driver]:
        return [d for d in self.started if d.state is not DriverState.DEAD and d not in self.vanished]

    #: Drivers deleted behind the platform's back (no longer listed; nobody told the manager).
    vanished: list[Driver]

    def vanish(self, driver: Driver) -> None:
        self.vanished.append(driver)

    def add_external(self, namespace: str = "", address: str | None = None) -> Driver:
        """A ready driver started by someone else (another gateway): listed, never started here."""
        d = Driver(
            id=f"fake-ext-{next(self._ids)}",
            address=address or self.address,
            provider=self.name,
            namespace=namespace,
            state=DriverState.READY,
        )
        self.started.append(d)
        return d
