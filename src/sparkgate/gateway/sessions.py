"""The gateway's table of sessions: where each lives, and when each ends.

Routes themselves are in the :class:`~sparkgate.gateway.affinity.AffinityStore`; the
:class:`SessionBook` keeps what happens around them:

* **sessions lost** with their driver, expired, or released after their client left: their next
  calls are told why (``SESSION_CHANGED``) for one session TTL instead of silently starting over;
* **sessions being placed** on a driver right now, and **sessions not routable yet**: Config(Set)
  options held until the session names its team and environment;
* **releases in flight**: a session whose ``ReleaseSession`` is with its driver;
* **clients that left**: the open client connections that carried each session's calls, and calls
  still running. A session whose every connection its client closed is released after
  ``affinity.client_gone_seconds`` unless the client calls again;
* **the sweep**: idle sessions expire after ``affinity.session_ttl_seconds``; sessions dropped by
  the gateway are released on their drivers (their operations interrupted, their state freed).

The call pipeline (:mod:`sparkgate.gateway.pipeline`) reads and changes it; the engine reports
connections and calls to it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from sparkgate.clusters.base import Driver, DriverState
from sparkgate.clusters.manager import ClusterManager
from sparkgate.config import GatewaySettings
from sparkgate.connect.probe import ChannelCalls, DriverCalls, release_session
from sparkgate.errors import BadRequest, Unavailable
from sparkgate.gateway.affinity import AffinityStore, Route, SessionKey, remember
from sparkgate.gateway.pipeline.hook import PipelineHook
from sparkgate.gateway.pipeline.intents import ConfigPairs, Forward
from sparkgate.gateway.routing import PartialRouting

log = logging.getLogger(__name__)

#: Seconds a forwarded ReleaseSession counts as in flight without an answer (then: forgotten).
RELEASING_SECONDS = 60.0
#: Config(Set) options held per session at most before it is routable.
MAX_HELD_OPTIONS = 1000


@dataclass(slots=True)
class Held:
    """A session seen by the gateway that cannot be routed yet: what it said so far."""

    routing: PartialRouting
    pairs: list[tuple[str, str | None]] = field(default_factory=list)
    since: float = field(default_factory=time.monotonic)


class SessionBook:
    def __init__(
        self,
        settings: GatewaySettings,
        store: AffinityStore,
        clusters: ClusterManager,
        hook: PipelineHook,
        calls: DriverCalls | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.clusters = clusters
        self.hook = hook
        #: How releases reach drivers (the gateway's driver connections).
        self.calls: DriverCalls = calls if calls is not None else ChannelCalls()
        #: Sessions dropped by the gateway: why, and when (kept for one session TTL, bounded).
        self._lost: dict[SessionKey, tuple[str, float]] = {}
        #: Sessions whose ReleaseSession went to the driver and has not been answered: since when.
        self._releasing: dict[SessionKey, float] = {}
        #: Open client connections that carried each session's calls, and sessions whose every
        #: such connection was closed by its client: since when.
        self._carriers: dict[SessionKey, int] = {}
        self._gone: dict[SessionKey, float] = {}
        #: Calls relayed and not ended yet, per session: a session with one is not idle.
        self._in_flight: dict[SessionKey, int] = {}
        #: Routes counted against their drivers here, and the driver each counted against.
        self._counted: dict[SessionKey, str] = {}
        store.on_evicted = self.uncounted
        #: Sessions being placed on a driver: their other calls wait for the same placement.
        self.placing: dict[SessionKey, asyncio.Future[Forward]] = {}
        #: Sessions not routable yet.
        self._held: dict[SessionKey, Held] = {}

    # -- routes -----------------------------------------------------------------------------------

    def restore(self) -> None:
        """Count restored routes against their drivers (after a gateway restart)."""
        for r in self.store.all():
            self.counted(r)

    def live_driver(self, route: Route) -> Driver | None:
        """The route's driver, unless it is gone."""
        driver = self.clusters.get(route.driver_id)
        return None if driver is None or driver.state is DriverState.DEAD else driver

    def driver_gone(self, route: Route) -> bool:
        """Whether the route's driver is known to be gone. With routes shared by other gateways, a
        driver this one does not know (yet) is not gone: another gateway may have started it."""
        if route.driver_id in self.clusters.dead:
            return True
        driver = self.clusters.get(route.driver_id)
        return driver.state is DriverState.DEAD if driver is not None else not self.store.shared

    def counted(self, route: Route) -> None:
        """This gateway routes calls to the session: its driver counts it (once)."""
        if route.key not in self._counted:
            driver = self.clusters.get(route.driver_id)
            if driver is not None:
                self._counted[route.key] = route.driver_id
                self.clusters.attach(driver)

    def uncounted(self, route: Route) -> None:
        """The route is gone (here or, told by the shared state, elsewhere)."""
        driver_id = self._counted.pop(route.key, None)
        if driver_id is not None:
            self.clusters.detach(driver_id)

    def used(self, route: Route, driver: Driver) -> None:
        """A call of this session goes to its driver now."""
        now = time.time()
        self.store.touch(route.key, now)
        driver.last_used = now

    async def add(self, route: Route) -> tuple[Route, bool]:
        """Record a new route: the route in force after (another gateway's, if one placed the same
        session first), and whether this call created it."""
        placed, created = await self.store.create(route)
        self.counted(placed)
        return placed, created

    async def remove(self, route: Route, lost: str = "") -> bool:
        """Drop the route if it is still this one (False: it was gone, or the session has another);
        with ``lost``, every gateway tells the session's next calls why."""
        ttl = self.settings.affinity.session_ttl_seconds
        if await self.store.delete(route.key, driver_id=route.driver_id, lost=lost, lost_ttl=ttl) is None:
            return False
        self.uncounted(route)
        return True

    # -- sessions not routable yet ----------------------------------------------------------------

    def held(self, key: SessionKey) -> Held | None:
        return self._held.get(key)

    def hold(self, key: SessionKey, routing: PartialRouting, pairs: list[tuple[str, str | None]]) -> None:
        """Keep what a Config(Set) of a session that cannot be routed yet said, for its placement."""
        held = self._held.get(key)
        if held is None:
            if len(self._held) >= self.settings.pending_max_sessions:
                raise BadRequest(
                    "too many sessions are waiting for their team/environment; send the routing "
                    "headers with the first request"
                )
            held = self._held[key] = Held(PartialRouting())
        held.routing.fill(routing)
        if len(held.pairs) + len(pairs) > MAX_HELD_OPTIONS:
            raise BadRequest("too many Config(Set) options before the session was routable")
        held.pairs.extend(pairs)

    def take_held(self, key: SessionKey) -> ConfigPairs | None:
        """The options held for a session being placed now (forgotten here)."""
        held = self._held.pop(key, None)
        return tuple(held.pairs) if held is not None and held.pairs else None

    def forget_held(self, key: SessionKey) -> None:
        self._held.pop(key, None)

    # -- sessions that ended --------------------------------------------------------------------

    def lost(self, key: SessionKey) -> str | None:
        """Why the gateway (or, with shared state, another gateway) dropped this session, if it
        did (within one session TTL)."""
        found = self._lost.get(key)
        return found[0] if found is not None else self.store.lost(key)

    def forget_lost(self, key: SessionKey) -> None:
        self._lost.pop(key, None)

    async def lose(self, route: Route, reason: str) -> None:
        """Drop a route whose driver is gone; the session's next calls are told ``reason``."""
        self._remember_lost(route.key, reason, time.time())
        await self.remove(route, lost=reason)

    def _remember_lost(self, key: SessionKey, reason: str, now: float) -> None:
        remember(self._lost, key, (reason, now))

    async def driver_died(self, driver: Driver, why: str) -> None:
        """Drop the routes of a dead driver; their sessions get SESSION_CHANGED on their next call."""
        routes = [r for r in self.store.all() if r.driver_id == driver.id]
        for r in routes:
            await self.lose(r, f"driver {driver.id} died: {why}")
        if routes:
            log.warning("%d session(s) lost with driver %s", len(routes), driver.id)

    # -- releases --------------------------------------------------------------------------------

    def releasing(self, key: SessionKey) -> None:
        """The session's ReleaseSession goes to its driver now."""
        remember(self._releasing, key, time.monotonic())

    def is_releasing(self, key: SessionKey) -> bool:
        since = self._releasing.get(key)
        return since is not None and time.monotonic() - since < RELEASING_SECONDS

    async def released(self, route: Route) -> None:
        """The client released its session (its ReleaseSession was answered): drop the route."""
        self._releasing.pop(route.key, None)
        if await self.remove(route):
            self.hook.session_released(route)

    # -- clients that left ------------------------------------------------------------------------

    def carried(self, key: SessionKey) -> None:
        """A client connection carried a call of this session (once per connection)."""
        self._carriers[key] = self._carriers.get(key, 0) + 1
        self._gone.pop(key, None)

    def connection_closed(self, keys: Iterable[SessionKey], *, by_client: bool) -> None:
        """A client connection that carried ``keys`` closed. If its client closed it (not the
        gateway: an idle timeout, a shutdown) and no other connection carries a session, the
        session is released after ``affinity.client_gone_seconds`` unless its client comes back."""
        now = time.monotonic()
        for key in keys:
            left = self._carriers.get(key, 0) - 1
            if left > 0:
                self._carriers[key] = left
                continue
            self._carriers.pop(key, None)
            if by_client and self.store.get(key) is not None:
                self._gone[key] = now

    def call_started(self, key: SessionKey) -> None:
        self._in_flight[key] = self._in_flight.get(key, 0) + 1

    def call_ended(self, key: SessionKey) -> None:
        left = self._in_flight.get(key, 0) - 1
        if left > 0:
            self._in_flight[key] = left
        else:
            self._in_flight.pop(key, None)

    # -- the sweep -------------------------------------------------------------------------------

    async def sweep(self) -> None:
        """Release idle sessions and those whose client left; forget what is no longer needed."""
        now = time.time()
        ttl = self.settings.affinity.session_ttl_seconds
        for key in self._in_flight:
            self.store.touch(key, now)  # a call still running: its session is not idle
        expired = []
        why = f"it was released after {ttl:g}s without a call"
        for r in await self.store.sweep(now - ttl, lost=why, lost_ttl=ttl):
            self.uncounted(r)
            self._remember_lost(r.key, why, now)
            log.info("session %s of %s expired after idling", r.session_id, r.user_id or "-")
            expired.append(r)
        held_cutoff = time.monotonic() - self.settings.pending_ttl_seconds
        for key in [k for k, h in self._held.items() if h.since < held_cutoff]:
            del self._held[key]
        for key in [k for k, (_, at) in self._lost.items() if at < now - ttl]:
            del self._lost[key]
        releasing_cutoff = time.monotonic() - RELEASING_SECONDS
        for key in [k for k, since in self._releasing.items() if since < releasing_cutoff]:
            del self._releasing[key]
        await self._release_on_drivers(expired + await self._drop_gone(now))

    async def _drop_gone(self, now: float) -> list[Route]:
        """Drop the routes of sessions whose client left ``client_gone_seconds`` ago and has not
        called since (nor has a call still running)."""
        wait = self.settings.affinity.client_gone_seconds
        cutoff = time.monotonic() - wait
        routes = []
        for key, since in [(k, t) for k, t in self._gone.items() if t < cutoff]:
            del self._gone[key]
            route = self.store.get(key)
            if route is None or key in self._carriers or key in self._in_flight:
                continue
            # Told first: a call arriving while the route is deleted gets this, not a new session.
            why = f"it was released {wait:g}s after its client closed its connection"
            self._remember_lost(key, why, now)
            try:
                if not await self.remove(route, lost=why):
                    continue
            except Unavailable as exc:  # the shared state did not answer: next sweep
                self._lost.pop(key, None)
                self._gone[key] = since
                log.warning("session %s not released yet: %s", route.session_id, exc.message)
                continue
            routes.append(route)
            log.info(
                "session %s of %s released: its client left %gs ago and has not called since",
                route.session_id,
                route.user_id or "-",
                wait,
            )
            self.hook.session_abandoned(route)
        return routes

    async def _release_on_drivers(self, routes: list[Route]) -> None:
        """Have the drivers of these dropped routes release their sessions: running operations
        are interrupted and state freed now, not at the driver's own idle timeout."""
        releases = []
        for route in routes:
            if self.store.get(route.key) is not None:
                continue  # placed again meanwhile: the driver's session is in use
            driver = self.live_driver(route)
            if driver is not None:
                releases.append(self._release_on_driver(driver, route))
        await asyncio.gather(*releases)

    async def _release_on_driver(self, driver: Driver, route: Route) -> None:
        try:
            await release_session(
                self.calls, driver.address, route.session_id, route.user_id, timeout=10.0, metadata=driver.auth_metadata
            )
        except Exception as exc:  # the route is gone either way; the driver's own timeout ends it
            log.warning("driver %s did not release session %s: %s", driver.id, route.session_id, exc)
