"""Driver health: active probes with thresholds, plus reports from the data plane.

A driver is probed every ``interval_seconds`` with :func:`sparkgate.connect.probe.ping` (a
ReleaseSession of an unknown session: answered at once, creates nothing). ``failures_to_dead``
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

import grpc
import grpc.aio

from sparkgate.clusters.base import Driver, DriverState
from sparkgate.config import HealthSettings
from sparkgate.connect.probe import ping

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
        self._channels: dict[str, grpc.aio.Channel] = {}

    def suspect(self, driver: Driver) -> bool:
        """True while a driver that failed a probe has not yet recovered."""
        rec = self._records.get(driver.id)
        return rec is not None and rec.failures > 0

    async def probe(self, driver: Driver) -> bool:
        ch = self._channels.get(driver.address)
        if ch is None:
            ch = self._channels[driver.address] = grpc.aio.insecure_channel(driver.address)
        try:
            await ping(ch, self.settings.timeout_seconds, driver.auth_metadata)
        except (TimeoutError, grpc.aio.AioRpcError) as exc:
            await self.observe(driver, ok=False, why=_why(exc))
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
        ch = self._channels.pop(driver.address, None)
        if ch is not None:
            await ch.close()
        log.error("driver %s is dead: %s", driver.id, why)
        await self._on_dead(driver, why)

    async def forget(self, driver: Driver) -> None:
        """A driver stopped on purpose: its probe record and channel go too."""
        self._records.pop(driver.id, None)
        ch = self._channels.pop(driver.address, None)
        if ch is not None:
            await ch.close()

    async def check(self, drivers: list[Driver]) -> None:
        # Draining drivers still serve their sessions: a death there must be noticed too.
        live = (DriverState.READY, DriverState.DRAINING)
        await asyncio.gather(*(self.probe(d) for d in drivers if d.state in live))

    async def close(self) -> None:
        for ch in self._channels.values():
            await ch.close()
        self._channels.clear()


def _why(exc: BaseException) -> str:
    if isinstance(exc, grpc.aio.AioRpcError):
        return f"{exc.code().name}: {exc.details()}"
    return "no answer in time"
