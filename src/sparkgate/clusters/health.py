"""Driver health: active probes with thresholds, plus reports from the data plane.

A driver is probed every ``interval_seconds`` with :func:`sparkgate.connect.probe.ping` (a
ReleaseSession of an unknown session: answered at once, creates nothing), on the connections the
gateway relays calls on when it runs (:meth:`HealthChecker.use`), else on a channel of its own. ``failures_to_dead``
consecutive failures mark it DEAD; a driver that failed at least once is *suspect* and gets no new
sessions until ``successes_to_ready`` consecutive successes. HTTP/2 keepalive pings are not used:
Spark Connect servers (grpc-java, ``permitKeepAliveTime`` = 5 min) answer frequent pings with
GOAWAY ``too_many_pings``.

Reports speed this up: the local provider knows the moment a driver process exits, and the relays
report a driver that refused a connection; both lead to an immediate probe or verdict.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from sparkgate.clusters.base import Driver, DriverState
from sparkgate.config import HealthSettings
from sparkgate.connect.probe import ChannelCalls, DriverCallFailed, DriverCalls, ping

log = logging.getLogger(__name__)


@dataclass
class _Record:
    failures: int = 0
    successes: int = 0


class HealthChecker:
    """Decides READY / suspect / DEAD from probe outcomes; calls ``on_dead`` once per dead driver."""

    def __init__(self, settings: HealthSettings, on_dead: Callable[[Driver, str], Awaitable[None]]) -> None:
        self.settings = settings
        self._on_dead = on_dead
        self._records: dict[str, _Record] = {}
        self._own = ChannelCalls()
        self.calls: DriverCalls = self._own

    def use(self, calls: DriverCalls | None) -> None:
        """Probe over ``calls`` (the gateway's driver connections); None: over channels of its own."""
        self.calls = calls if calls is not None else self._own

    def suspect(self, driver: Driver) -> bool:
        """True while a driver that failed a probe has not yet recovered."""
        rec = self._records.get(driver.id)
        return rec is not None and rec.failures > 0

    async def probe(self, driver: Driver) -> bool:
        try:
            await ping(self.calls, driver.address, self.settings.timeout_seconds, driver.auth_metadata)
        except DriverCallFailed as exc:
            await self.observe(driver, ok=False, why=str(exc))
            return False
        await self.observe(driver, ok=True)
        return True

    async def observe(self, driver: Driver, *, ok: bool, why: str = "") -> None:
        if driver.state is DriverState.DEAD:
            return
        rec = self._records.setdefault(driver.id, _Record())
        if ok:
            rec.successes += 1
            if rec.failures and rec.successes >= self.settings.successes_to_ready:
                log.info("driver %s answers again", driver.id)
                rec.failures = 0
            return
        rec.successes = 0
        rec.failures += 1
        log.warning(
            "driver %s failed a health probe (%d/%d): %s",
            driver.id,
            rec.failures,
            self.settings.failures_to_dead,
            why,
        )
        if rec.failures >= self.settings.failures_to_dead:
            await self.declare_dead(driver, f"{rec.failures} failed health probes ({why})")

    async def declare_dead(self, driver: Driver, why: str) -> None:
        if driver.state is DriverState.DEAD:
            return
        driver.state = DriverState.DEAD
        self._records.pop(driver.id, None)
        await self.calls.forget(driver.address)
        log.error("driver %s is dead: %s", driver.id, why)
        await self._on_dead(driver, why)

    async def forget(self, driver: Driver) -> None:
        """A driver stopped on purpose: its probe record and connections go too."""
        self._records.pop(driver.id, None)
        await self.calls.forget(driver.address)

    async def check(self, drivers: list[Driver]) -> None:
        # Draining drivers still serve their sessions: a death there must be noticed too.
        live = (DriverState.READY, DriverState.DRAINING)
        await asyncio.gather(*(self.probe(d) for d in drivers if d.state in live))

    async def close(self) -> None:
        await self._own.close()
