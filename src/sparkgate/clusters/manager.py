"""The gateway's view of every driver, the warm pool, and where a new session goes.

:class:`ClusterManager` answers one question for the gateway — *which driver should this new
session of team T in environment E use?* — in this order:

1. the **least-loaded ready driver** already serving the namespace ``sjns-{team}-{env}`` that has
   room (fewer than ``sessions_per_driver`` sessions; 1 gives each session a driver of its own),
2. a **warm driver** from the pool, claimed for the namespace (the pool refills in the background),
3. a **new driver** started for the namespace (one start at a time per namespace: concurrent new
   sessions wait for the same driver instead of each starting their own); at ``max_drivers`` the
   namespace's drivers are shared beyond their room rather than refusing the session, and a
   namespace with no driver gets the place of the least recently used idle team driver.

A team's running drivers come before the pool: taking a warm driver while the team's own driver
still has room would use the pool up one session at a time.

It also adopts drivers found by the provider at start-up, so a restarted gateway neither leaks nor
duplicates them.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from sparkgate.aio import TaskSupervisor
from sparkgate.clusters.base import (
    POOL_NAMESPACE,
    ClusterProvider,
    Driver,
    DriverSpec,
    DriverState,
    namespace_for,
)
from sparkgate.clusters.health import HealthChecker
from sparkgate.clusters.leader import Alone, AlwaysLeader, Leadership, SharedFleet
from sparkgate.clusters.placement import LeastSessions, PlacementPolicy
from sparkgate.config import DEFAULT_PROFILE, CatalogSettings, HealthSettings, PoolProfile, QuotaSettings
from sparkgate.errors import DriverStartError, ResourceExhausted, Unavailable

log = logging.getLogger(__name__)

#: Seconds a team driver must have had no session before it may be stopped to make room for
#: another namespace's driver at ``max_drivers`` (a driver just handed out is not yet attached).
MIN_IDLE_TO_STOP = 10.0
#: Seconds a driver start for a namespace keeps other gateways sharing the drivers from starting
#: one too (they wait for it, looking every START_LOCK_POLL_SECONDS): longer than a driver may take
#: to start (``local.startup_timeout_seconds``); a gateway that died starting one holds them no longer.
START_LOCK_SECONDS = 300.0
START_LOCK_POLL_SECONDS = 1.0


@dataclass(slots=True)
class StartBackoff:
    """Consecutive failed driver starts for one profile (pool) or namespace, and when to try again."""

    failures: int = 0
    retry_at: float = 0.0
    last_error: str = ""

    def to_dict(self) -> dict[str, object]:
        return {
            "failures": self.failures,
            "retry_in_seconds": round(max(0.0, self.retry_at - time.monotonic()), 1),
            "last_error": self.last_error[:500],
        }


def _remember(ids: set[str], driver_id: str, limit: int = 1000) -> None:
    """Add ``driver_id`` to a set of ids kept about drivers, which stays bounded (the ids of
    drivers long gone fall out first, roughly)."""
    ids.add(driver_id)
    while len(ids) > limit:
        ids.pop()


class ClusterManager:
    def __init__(
        self,
        provider: ClusterProvider,
        *,
        pool_size: int = 1,
        profiles: Mapping[str, PoolProfile] | None = None,
        profile_for: Callable[[str, str], str] | None = None,
        catalogs: Mapping[str, CatalogSettings] | None = None,
        placement: PlacementPolicy | None = None,
        max_drivers: int = 6,
        sessions_per_driver: int = 8,
        health: HealthSettings | None = None,
        driver_idle_ttl: float = 900.0,
        quotas: QuotaSettings | None = None,
        start_backoff: tuple[float, float] = (5.0, 300.0),
        reconcile_interval: float = 30.0,
    ) -> None:
        self.provider = provider
        #: Driver profiles by name, with their warm targets (``pool_size`` is the default profile's
        #: when ``profiles`` is not given).
        self.profiles: dict[str, PoolProfile] = (
            dict(profiles) if profiles is not None else {DEFAULT_PROFILE: PoolProfile(size=pool_size)}
        )
        self._profile_for = profile_for or (lambda team, env: DEFAULT_PROFILE)
        #: The catalog each profile's drivers mount (``Settings.profile_catalogs``; unlisted: the default).
        self.catalogs: dict[str, CatalogSettings] = dict(catalogs or {})
        self.placement: PlacementPolicy = placement or LeastSessions()
        self.max_drivers = max_drivers
        self.sessions_per_driver = sessions_per_driver
        self.driver_idle_ttl = driver_idle_ttl
        self.quotas = quotas or QuotaSettings(max_drivers_per_namespace=0, max_sessions_per_namespace=0)
        self.start_backoff = start_backoff
        self.reconcile_interval = reconcile_interval
        self._pool_starting = 0
        #: Warm drivers starting, by profile.
        self._pool_profiles_starting: Counter[str] = Counter()
        self._drivers: dict[str, Driver] = {}
        self._starting: dict[str, asyncio.Task[Driver]] = {}  # namespace -> start in flight
        self._claiming: dict[str, asyncio.Task[str]] = {}  # namespace -> warm driver claim in flight
        self._claimed_here: set[str] = set()  # warm drivers being claimed (offered to nobody else)
        #: Drivers stopped on purpose (idle, or making room) until their process is gone: they still
        #: count against ``max_drivers`` and are not adopted again from the provider's list.
        self._stopping: dict[str, asyncio.Task[None]] = {}
        #: Failed starts by ``pool:{profile}`` or namespace (cleared by a successful start).
        self.backoff: dict[str, StartBackoff] = {}
        self._pool_lock = asyncio.Lock()
        self._refill_timer: asyncio.TimerHandle | None = None
        self._tasks = TaskSupervisor("clusters")
        self._pool_waiters: list[asyncio.Event] = []
        self._dead_listeners: list[Callable[[Driver, str], Awaitable[None]]] = []
        #: Why recently dead drivers died (bounded; for status and logs), and how many died in all.
        self.dead: dict[str, str] = {}
        self.deaths = 0
        self.health = HealthChecker(health, self._driver_died) if health is not None else None
        #: Whether this gateway fills the pool and stops idle drivers (one does, when several share them).
        self.leadership: Leadership = AlwaysLeader()
        #: What this gateway shares with others using the same drivers (sessions per driver, starts).
        self.fleet: SharedFleet = Alone()
        #: Sessions per driver over every gateway sharing it, as last counted (:meth:`_count_shared`).
        self._shared_sessions: dict[str, int] = {}
        #: Drivers another gateway is stopping (idle over all of them): their end is expected.
        self._stopped_elsewhere: set[str] = set()
        #: Drivers draining because their provider said so (:meth:`drain`), until it calls it off.
        self._drained_by_provider: set[str] = set()
        provider.on_exit = self._driver_exited
        provider.on_drain = self.drain
        provider.on_undrain = self.undrain

    @property
    def pool_size(self) -> int:
        """Warm drivers wanted over all profiles."""
        return sum(p.size for p in self.profiles.values())

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        """Adopt running drivers, then fill the warm pool and keep the registry in step, in the background."""
        for d in await self.provider.list_drivers():
            if d.state in (DriverState.READY, DriverState.DRAINING):  # (starting, crashed, going: not taken)
                self._adopt(d)
        self.refill_pool()
        if any(d.state is DriverState.DRAINING and d.namespace == POOL_NAMESPACE for d in self._drivers.values()):
            self._tasks.spawn("stop-outdated", self.expire_idle())
        self._tasks.every("expire-idle", min(30.0, self.driver_idle_ttl / 4), self.expire_idle)
        self._tasks.every("reconcile", self.reconcile_interval, self.reconcile)
        if self.health is not None:
            checker = self.health
            self._tasks.every("health", checker.settings.interval_seconds, lambda: checker.check(self.drivers()))

    def _adopt(self, d: Driver) -> None:
        where = d.namespace or "pool"
        outdated = bool(d.fingerprint) and d.fingerprint != self._fingerprint(self._spec(d.namespace, d.profile))
        if d.state is DriverState.DRAINING and not outdated:  # (its provider says so: its node is being drained)
            log.warning("adopted driver %s (%s) takes no new sessions: its provider drains it", d.id, where)
            self._drained_by_provider.add(d.id)  # (until the provider calls it off: undrain)
        elif outdated:
            # Started before its profile's Spark conf, catalog or Spark version changed: it keeps
            # the sessions it has (a restarted gateway restores their routes) but takes no new
            # ones, and is stopped once it has none (:meth:`expire_idle`); the pool starts a
            # replacement with today's settings.
            d.state = DriverState.DRAINING
            log.warning(
                "adopted driver %s (%s, profile %s) runs with settings that changed since it started: "
                "it takes no new sessions and stops once its current ones end",
                d.id,
                where,
                d.profile,
            )
        else:
            d.state = DriverState.READY  # health probes tell otherwise soon enough
        self._drivers[d.id] = d
        log.info("adopted running driver %s (%s, profile %s) at %s", d.id, where, d.profile, d.address)

    def _fingerprint(self, spec: DriverSpec) -> str:
        return self.provider.fingerprint(spec)

    async def close(self, *, stop_drivers: bool = True) -> None:
        if self._refill_timer is not None:
            self._refill_timer.cancel()
        await self._tasks.close()
        if self.health is not None:
            await self.health.close()
        for task in list(self._starting.values()):
            task.cancel()
        # Drivers being stopped on purpose are stopped whatever happens to the rest.
        stopping = [t for t in self._stopping.values() if not t.done()]
        if stopping:
            await asyncio.gather(*stopping, return_exceptions=True)
        if stop_drivers:
            await asyncio.gather(
                *(self.provider.stop_driver(d) for d in list(self._drivers.values())),
                return_exceptions=True,
            )
            self._drivers.clear()

    # -- queries ------------------------------------------------------------------------------

    def get(self, driver_id: str) -> Driver | None:
        return self._drivers.get(driver_id)

    def drivers(self) -> list[Driver]:
        return list(self._drivers.values())

    def warm(self, profile: str | None = None) -> list[Driver]:
        """Unclaimed ready drivers (of one profile, or of all)."""
        return [
            d
            for d in self._drivers.values()
            if d.namespace == POOL_NAMESPACE
            and d.id not in self._claimed_here
            and self._usable(d)
            and (profile is None or d.profile == profile)
        ]

    def profile_for(self, team: str, environment: str) -> str:
        return self._profile_for(team, environment)

    def _usable(self, d: Driver) -> bool:
        """READY and not suspect (a driver that failed a probe takes no new sessions until it recovers)."""
        return d.state is DriverState.READY and not (self.health is not None and self.health.suspect(d))

    # -- discovery ----------------------------------------------------------------------------

    async def reconcile(self) -> None:
        """Bring the registry in line with what the provider runs (its list of drivers).

        A driver the provider no longer lists is gone (deleted outside sparkgate, its process
        reaped before we noticed): it is handled as dead, so its sessions learn at once. A ready
        driver the provider lists but we do not know (started by another gateway sharing the
        state, or restored by hand) is adopted.
        """
        listed = {d.id: d for d in await self.provider.list_drivers()}
        for d in list(self._drivers.values()):
            if d.id not in listed and d.id in self._stopped_elsewhere:
                self._driver_exited(d.id, None)  # (stopped by another gateway: no crash)
            elif d.id not in listed and d.state is not DriverState.DEAD:
                log.warning("driver %s is no longer listed by the %s provider", d.id, self.provider.name)
                if self.health is not None:
                    await self.health.declare_dead(d, f"no longer listed by the {self.provider.name} provider")
                else:
                    await self._driver_died(d, f"no longer listed by the {self.provider.name} provider")
        for driver_id, d in listed.items():
            ours = self._drivers.get(driver_id)
            if ours is not None and ours.namespace == POOL_NAMESPACE and d.namespace != POOL_NAMESPACE:
                if driver_id not in self._claimed_here:
                    ours.namespace = d.namespace  # claimed through another gateway: in use from now on
                    ours.last_used = time.time()
            known = driver_id in self._drivers or driver_id in self._stopping
            # A driver declared dead is still listed (as its provider last recorded it) while its
            # process is being stopped: it is never taken back.
            if not known and driver_id not in self.dead and d.state is DriverState.READY:
                self._adopt(d)

    # -- failures -----------------------------------------------------------------------------

    def on_driver_dead(self, listener: Callable[[Driver, str], Awaitable[None]]) -> None:
        """Call ``listener(driver, why)`` when a driver dies (the gateway drops its routes)."""
        self._dead_listeners.append(listener)

    def _driver_exited(self, driver_id: str, returncode: int | None) -> None:
        """The provider saw a driver process exit that nobody asked to stop (here)."""
        d = self._drivers.get(driver_id)
        if d is None:
            return
        if driver_id in self._stopped_elsewhere:  # another gateway stopped it, idle: no crash
            self._stopped_elsewhere.discard(driver_id)
            self._drivers.pop(driver_id, None)
            log.info("driver %s was stopped by another gateway", driver_id)
            return
        why = f"process exited with code {returncode}"
        if self.health is not None:
            self._tasks.spawn("driver-exited", self.health.declare_dead(d, why))
        else:
            d.state = DriverState.DEAD
            self._tasks.spawn("driver-exited", self._driver_died(d, why))

    def report_unreachable(self, driver_id: str) -> None:
        """A relay could not reach this driver: probe it now instead of at the next round."""
        d = self._drivers.get(driver_id)
        if d is not None and self.health is not None and d.state is DriverState.READY:
            self._tasks.spawn("probe-now", self.health.probe(d))

    async def _driver_died(self, driver: Driver, why: str) -> None:
        driver.state = DriverState.DEAD
        self._drivers.pop(driver.id, None)
        self.deaths += 1
        self.dead[driver.id] = why
        while len(self.dead) > 100:
            self.dead.pop(next(iter(self.dead)))
        for listener in self._dead_listeners:
            try:
                await listener(driver, why)
            except Exception:
                log.exception("driver-dead listener failed for %s", driver.id)
        try:
            await self.provider.discard(driver)  # make sure nothing of it is left running
        except Exception:
            log.exception("could not clean up dead driver %s", driver.id)
        self.refill_pool()

    # -- start backoff ------------------------------------------------------------------------

    def _start_failed(self, key: str, exc: BaseException) -> StartBackoff:
        b = self.backoff.setdefault(key, StartBackoff())
        b.failures += 1
        first, cap = self.start_backoff
        delay = min(cap, first * 2 ** (b.failures - 1))
        b.retry_at = time.monotonic() + delay
        b.last_error = str(exc) or type(exc).__name__
        log.error("driver start for %s failed (%d in a row); next attempt in %.0fs: %s", key, b.failures, delay, exc)
        return b

    def _check_backoff(self, key: str) -> None:
        b = self.backoff.get(key)
        if b is None:
            return
        wait = b.retry_at - time.monotonic()
        if wait > 0:
            first_line = b.last_error.splitlines()[0] if b.last_error else "unknown error"
            raise Unavailable(
                f"the last {b.failures} attempt(s) to start a driver for {key} failed ({first_line}); "
                f"the next one is allowed in {wait:.0f}s",
                retry_after_seconds=wait,
            )

    # -- placement ----------------------------------------------------------------------------

    def _in_use(self) -> int:
        """Drivers running, being started or being stopped (what ``max_drivers`` bounds)."""
        return len(self._drivers) + len(self._starting) + self._pool_starting + len(self._stopping)

    async def acquire(
        self, team: str, environment: str, *, exclude: frozenset[str] = frozenset(), waited_for_pool: bool = False
    ) -> Driver:
        """Pick the driver for a new session (does not count the session; see :meth:`attach`).

        ``exclude`` names drivers the session must not go to (it just failed on them);
        ``waited_for_pool``: this session waited for a warm driver already (it waits once).
        """
        ns = namespace_for(team, environment)
        claiming = self._claiming.get(ns)
        if claiming is not None:  # this namespace is claiming a warm driver: it may be enough
            await asyncio.wait([claiming])
            return await self.acquire(team, environment, exclude=exclude, waited_for_pool=waited_for_pool)
        profile = self.profile_for(team, environment)
        mine = [d for d in self._drivers.values() if d.namespace == ns]
        await self._count_shared(mine)
        q = self.quotas
        if q.max_sessions_per_namespace and sum(self._load(d) for d in mine) >= q.max_sessions_per_namespace:
            raise ResourceExhausted(
                f"team {team!r} already has {q.max_sessions_per_namespace} sessions in {environment!r} "
                f"(quotas.max_sessions_per_namespace={q.max_sessions_per_namespace}); stop sessions you no "
                "longer use (spark.stop()) or ask the platform team to raise the quota"
            )
        ready = [d for d in mine if self._usable(d) and d.id not in exclude]
        roomy = [d for d in ready if self._load(d) < self.sessions_per_driver]
        if roomy:
            return self._handed_out(self._choose(roomy))
        serving = [d for d in mine if d.state is not DriverState.DRAINING]  # draining ones are on their way out
        at_ns_cap = bool(q.max_drivers_per_namespace) and len(serving) + (ns in self._starting) >= (
            q.max_drivers_per_namespace
        )
        if at_ns_cap and ready:  # the namespace has all the drivers it may: share them
            return self._handed_out(self._choose(ready))
        if at_ns_cap and ns not in self._starting:
            raise ResourceExhausted(
                f"{ns} already holds {q.max_drivers_per_namespace} drivers "
                f"(quotas.max_drivers_per_namespace={q.max_drivers_per_namespace}) and none is ready"
            )
        warm = [d for d in self.warm(profile) if d.id not in exclude]
        if warm:
            claimed = await self._claim(min(warm, key=lambda x: x.started_at), ns)
            # Won, or lost to another gateway: then the namespace's drivers are looked at again
            # (the winner may be this very team) before another warm one is tried.
            if claimed is not None:
                return claimed
            return await self.acquire(team, environment, exclude=exclude, waited_for_pool=waited_for_pool)
        task = self._starting.get(ns)
        if (
            task is None
            and self.provider.starts_share_cpu
            and self._pool_profiles_starting[profile]
            and not waited_for_pool
        ):
            # A warm driver of this profile is starting on this machine already, further along
            # than one started now would be (and not slowed down by it): take it when it is ready.
            await self._pool_changed()
            return await self.acquire(team, environment, exclude=exclude, waited_for_pool=True)
        if task is None:
            at_cap = self._in_use() >= self.max_drivers
            if at_cap and ready:  # every driver of the namespace is full: share rather than refuse
                return self._handed_out(self._choose(ready))
            self._check_backoff(ns)
            if at_cap and not self._idle_to_stop():
                raise self._full(ns)
            task = asyncio.create_task(self._start(ns, profile, exclude, make_room=at_cap), name=f"start-driver:{ns}")
            self._starting[ns] = task
            task.add_done_callback(self._forget_start(ns))
        try:
            # shield: one waiter giving up (client cancelled) must not kill the start for others.
            started = await asyncio.shield(task)
        except (DriverStartError, ResourceExhausted):
            raise
        except Exception as exc:
            raise Unavailable(f"could not start a driver for {ns}: {exc}") from exc
        if started.id in exclude:  # (a start another session asked for found the driver this one left)
            raise Unavailable(
                f"the driver found for {ns} is {started.id}, which this session just failed on; retry",
                retry_after_seconds=1.0,
            )
        return self._handed_out(started)

    async def _claim(self, d: Driver, ns: str) -> Driver | None:
        """Claim warm driver ``d`` for ``ns`` through the provider (atomic between gateways that
        share the drivers): ``d`` if this claim won, ``None`` if another gateway's did first."""

        async def claim() -> str:
            holder = await self.provider.claim(d, ns)
            d.namespace = holder  # recorded here even if the caller has given up meanwhile
            d.last_used = time.time()
            return holder

        task = asyncio.create_task(claim(), name=f"claim-driver:{ns}")
        self._claiming[ns] = task
        self._claimed_here.add(d.id)

        def done(_: asyncio.Task[str]) -> None:
            if self._claiming.get(ns) is task:
                del self._claiming[ns]
            self._claimed_here.discard(d.id)
            self.refill_pool()

        task.add_done_callback(done)
        try:
            holder = await asyncio.shield(task)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            raise Unavailable(f"could not claim warm driver {d.id} for {ns}: {exc}") from exc
        if holder != ns:
            log.info("warm driver %s was claimed for %s by another gateway first", d.id, holder or "?")
            return None
        log.info("claimed warm driver %s (profile %s) for %s", d.id, d.profile, ns)
        return self._handed_out(d)

    def _forget_start(self, ns: str) -> Callable[[asyncio.Task[Driver]], None]:
        def done(_task: asyncio.Task[Driver]) -> None:
            self._starting.pop(ns, None)

        return done

    def _spec(self, namespace: str, profile: str) -> DriverSpec:
        p = self.profiles.get(profile) or PoolProfile()
        return DriverSpec(
            namespace=namespace,
            spark_conf=p.spark_conf,
            profile=profile,
            spark_version=p.spark_version,
            catalog=self.catalogs.get(profile, CatalogSettings()),
        )

    def _handed_out(self, d: Driver) -> Driver:
        """A driver given to a new session counts as used now: it is not idle until the session
        that asked for it is attached (:meth:`attach`) and gone again."""
        d.last_used = time.time()
        return d

    def _idle_to_stop(self) -> list[Driver]:
        """At ``max_drivers``, the team drivers that may be stopped so another namespace can have
        one, least recently used first: those with no session, idle for at least
        ``MIN_IDLE_TO_STOP`` seconds."""
        cutoff = time.time() - MIN_IDLE_TO_STOP
        idle = [
            d
            for d in self._drivers.values()
            if d.namespace != POOL_NAMESPACE and self._load(d) == 0 and d.last_used <= cutoff and not d.external
        ]
        return sorted(idle, key=lambda x: x.last_used)

    def _full(self, ns: str) -> ResourceExhausted:
        return ResourceExhausted(
            f"no driver for {ns}: the platform already runs {len(self._drivers)} drivers "
            f"(max_drivers={self.max_drivers}) and none has been idle for {MIN_IDLE_TO_STOP:.0f}s; "
            "try again when sessions end (spark.stop())"
        )

    async def _make_room(self, ns: str) -> None:
        """Stop the least recently used idle team driver (one no gateway placed a session on since
        it was counted: :meth:`_stoppable`) and wait until its process is gone."""
        for d in self._idle_to_stop():
            if not await self._stoppable([d], token=None, quiet=False) or self._drivers.get(d.id) is not d:
                continue  # (in use through another gateway, or stopped here meanwhile)
            log.info(
                "max_drivers=%d reached: stopping %s (%s, idle for %.0fs) to start a driver for %s",
                self.max_drivers,
                d.id,
                d.namespace,
                time.time() - d.last_used,
                ns,
            )
            await asyncio.shield(self._retire(d))  # its JVM is gone before the next one starts
            return
        raise self._full(ns)

    async def _stoppable(self, drivers: list[Driver], token: int | None, *, quiet: bool = True) -> list[Driver]:
        """Those of ``drivers`` now marked as being stopped over every gateway sharing them (so no
        session can be placed on them any more): the ones that may be stopped. With a lease
        ``token``: only while this gateway still leads the fleet with it. ``quiet``: none if the
        shared state does not answer (else its UNAVAILABLE, to retry)."""
        if not drivers or token == 0:
            return []
        try:
            marked = set(await self.fleet.mark_stopping([d.id for d in drivers], token))
        except Unavailable as exc:
            if not quiet:
                raise
            log.warning("no driver stopped now: %s", exc.message)
            return []
        return [d for d in drivers if d.id in marked]

    def drain(self, driver_id: str, why: str, *, stopping: bool = False) -> None:
        """No new session goes to this driver (another gateway is stopping it: ``stopping``; its
        node is being drained); its sessions go on while it runs."""
        d = self._drivers.get(driver_id)
        if d is None:
            return
        if stopping:
            _remember(self._stopped_elsewhere, driver_id)  # (its end is no crash)
        if d.state is DriverState.READY:
            log.info("driver %s takes no new session: %s", driver_id, why)
            d.state = DriverState.DRAINING
            if not stopping:
                _remember(self._drained_by_provider, driver_id)

    def undrain(self, driver_id: str) -> None:
        """The driver's provider called off what :meth:`drain` was told (its node is schedulable
        again): it takes new sessions. A driver draining for another reason (outdated settings,
        stopped by another gateway) stays draining."""
        d = self._drivers.get(driver_id)
        if driver_id in self._drained_by_provider:
            self._drained_by_provider.discard(driver_id)
            if d is not None and d.state is DriverState.DRAINING and driver_id not in self._stopped_elsewhere:
                log.info("driver %s takes new sessions again: its provider no longer drains it", driver_id)
                d.state = DriverState.READY

    async def _start(
        self,
        namespace: str,
        profile: str,
        exclude: frozenset[str] = frozenset(),
        *,
        make_room: bool = False,
    ) -> Driver:
        found = await self._found_elsewhere(namespace, profile, exclude)
        if found is not None:
            return found
        give_up = time.monotonic() + START_LOCK_SECONDS
        waited = False
        while not await self.fleet.lock_start(namespace, START_LOCK_SECONDS):
            # Another gateway is starting a driver for this namespace: use it once it is up.
            waited = True
            if time.monotonic() > give_up:
                break  # (its start takes too long: start one here)
            await asyncio.sleep(START_LOCK_POLL_SECONDS)
            found = await self._found_elsewhere(namespace, profile, exclude)
            if found is not None:
                return found
        try:
            if waited:  # (the other start may have ended between the last look and the lock)
                found = await self._found_elsewhere(namespace, profile, exclude)
                if found is not None:
                    return found
            if make_room and self._in_use() - 1 >= self.max_drivers:  # (this start counts itself)
                await self._make_room(namespace)
            try:
                d = await self.provider.start_driver(self._spec(namespace, profile))
            except Exception as exc:
                self._start_failed(namespace, exc)
                raise
        finally:
            try:
                await self.fleet.unlock_start(namespace)
            except Exception as exc:  # (it expires on its own)
                log.warning("could not release the start lock of %s: %s", namespace, exc)
        self.backoff.pop(namespace, None)
        d.profile = profile
        self._drivers[d.id] = d
        return d

    async def _found_elsewhere(self, namespace: str, profile: str, exclude: frozenset[str]) -> Driver | None:
        """Before a driver is started: one that another gateway sharing the drivers started for
        ``namespace``, or a warm one it started that this gateway has not adopted yet."""
        await self.reconcile()
        await self._count_shared([d for d in self._drivers.values() if d.namespace == namespace])
        roomy = [
            d
            for d in self._drivers.values()
            if d.namespace == namespace
            and self._usable(d)
            and self._load(d) < self.sessions_per_driver
            and d.id not in exclude
        ]
        if roomy:
            return self._choose(roomy)
        while warm := [d for d in self.warm(profile) if d.id not in exclude]:  # (read again after each claim)
            d = min(warm, key=lambda x: x.started_at)
            if await self._claim(d, namespace) is not None:
                return d
        return None

    def _load(self, d: Driver) -> int:
        """A driver's sessions: this gateway's, or over every gateway sharing it as last counted."""
        return max(d.sessions, self._shared_sessions.get(d.id, 0))

    def _choose(self, candidates: list[Driver]) -> Driver:
        """The placement policy's choice, by :meth:`_load` (sessions over every gateway)."""
        if not self._shared_sessions:
            return self.placement.choose(candidates)
        chosen = self.placement.choose([dataclasses.replace(d, sessions=self._load(d)) for d in candidates])
        return next(d for d in candidates if d.id == chosen.id)

    async def _count_shared(self, drivers: list[Driver]) -> bool:
        """Drivers shared with other gateways: count their sessions over all of them (what
        :meth:`_load` reads). False if that count is unknown now."""
        ids = [d.id for d in drivers if d.state is not DriverState.DEAD]
        if not ids:
            return True
        try:
            counts = await self.fleet.sessions_on(ids)
        except Unavailable as exc:
            log.warning("sessions per driver over all gateways unknown (%s): counting this gateway's", exc.message)
            return False
        if counts is not None:
            self._shared_sessions.update(counts)
            while len(self._shared_sessions) > 4 * max(1, len(self._drivers)) + 100:  # (drivers gone)
                self._shared_sessions.pop(next(iter(self._shared_sessions)))
        return True

    async def _without_sessions(self, drivers: list[Driver]) -> list[Driver]:
        """Those of ``drivers`` with no session, on this gateway or (drivers shared by several) on
        any of them: a driver in use through another gateway counts as used now."""
        if not drivers or not await self._count_shared(drivers):
            return []  # (unsure: none is stopped now)
        now = time.time()
        unused = []
        for d in drivers:
            if not self._load(d):
                unused.append(d)
            elif d.sessions == 0:  # used through another gateway only
                d.last_used = now
        return unused

    def attach(self, driver: Driver) -> None:
        driver.sessions += 1
        driver.last_used = time.time()

    def detach(self, driver_id: str) -> None:
        d = self._drivers.get(driver_id)
        if d is not None and d.sessions > 0:
            d.sessions -= 1
            d.last_used = time.time()

    async def expire_idle(self) -> list[Driver]:
        """Stop team drivers that had no session for ``driver_idle_ttl`` seconds (pool drivers stay).

        Drivers that take no new session (DRAINING: adopted with outdated settings, or on a node
        being drained) go too: a warm one at once (it never had a session; the pool refills), a
        team one like any other once idle.
        """
        if not self.leadership.is_leader():
            return []
        try:
            for orphan in await self.provider.reap():
                log.warning("removed driver %s: it would never serve (stuck starting, or ended)", orphan)
        except Exception as exc:
            log.warning("could not look for orphaned drivers: %s", exc)
        cutoff = time.time() - self.driver_idle_ttl
        idle = await self._without_sessions(
            [
                d
                for d in self._drivers.values()
                if not d.external
                and (
                    (d.namespace != POOL_NAMESPACE and d.last_used < cutoff)
                    or (d.namespace == POOL_NAMESPACE and d.state is DriverState.DRAINING)
                )
            ]
        )
        idle = [d for d in await self._stoppable(idle, self.leadership.token) if self._drivers.get(d.id) is d]
        for d in idle:
            log.info("driver %s (%s) idle for %.0fs: stopping it", d.id, d.namespace, time.time() - d.last_used)
        if idle:
            await asyncio.gather(*(asyncio.shield(self._retire(d)) for d in idle))
            self.refill_pool()
        return idle

    def _retire(self, d: Driver) -> asyncio.Task[None]:
        """Stop a driver on purpose: it leaves the registry now, and counts as in use until its
        process is gone. The stop runs on its own, so a caller giving up does not cut it short."""
        d.state = DriverState.DRAINING
        self._drivers.pop(d.id, None)

        async def stop() -> None:
            try:
                if self.health is not None:
                    await self.health.forget(d)
                await self.provider.stop_driver(d)
            except Exception:
                log.exception("could not stop driver %s", d.id)
            finally:
                self._stopping.pop(d.id, None)

        task = asyncio.create_task(stop(), name=f"stop-driver:{d.id}")
        self._stopping[d.id] = task
        return task

    # -- warm pool ----------------------------------------------------------------------------

    def refill_pool(self) -> None:
        """Start drivers in the background until every profile has its warm target (the leader
        does, when gateways share the fleet)."""
        if self.pool_size > 0 and self.leadership.is_leader():
            self._tasks.spawn("refill-pool", self._refill())

    def _pool_short(self) -> str | None:
        """A profile below its warm target whose backoff allows a start now, if any."""
        now = time.monotonic()
        for name, p in sorted(self.profiles.items()):
            have = sum(
                1
                for d in self._drivers.values()
                if d.namespace == POOL_NAMESPACE and d.profile == name and d.state is not DriverState.DRAINING
            )
            b = self.backoff.get(f"pool:{name}")
            if have < p.size and (b is None or b.retry_at <= now):
                return name
        return None

    async def _refill(self) -> None:
        async with self._pool_lock:
            deferred = False
            while True:
                name = self._pool_short()
                if name is None:
                    self._schedule_backoff_retry()
                    return
                if self._in_use() >= self.max_drivers:
                    log.warning(
                        "warm pool below target (%d/%d): max_drivers=%d reached",
                        len(self.warm()),
                        self.pool_size,
                        self.max_drivers,
                    )
                    return
                if not self.leadership.is_leader():
                    return  # (lost the lease meanwhile: the new leader fills the pool)
                if self.provider.starts_share_cpu and self._starting and not deferred:
                    # A team waits for a driver starting on this machine: it goes first (two cold
                    # JVMs at once would each take nearly twice as long). Once: teams that keep
                    # coming do not keep the pool empty.
                    deferred = True
                    await asyncio.wait(list(self._starting.values()))
                    continue
                self._pool_starting += 1
                self._pool_profiles_starting[name] += 1
                try:
                    d = await self.provider.start_driver(self._spec(POOL_NAMESPACE, name))
                except Exception as exc:
                    self._start_failed(f"pool:{name}", exc)
                    continue
                finally:
                    self._pool_starting -= 1
                    self._pool_profiles_starting[name] -= 1
                    self._wake_pool_waiters()
                self.backoff.pop(f"pool:{name}", None)
                d.profile = name
                self._drivers[d.id] = d
                self._wake_pool_waiters()

    def _wake_pool_waiters(self) -> None:
        for ev in self._pool_waiters:
            ev.set()

    async def _pool_changed(self) -> None:
        """Wait until a warm driver starting now is ready, or its start ended."""
        ev = asyncio.Event()
        self._pool_waiters.append(ev)
        try:
            await ev.wait()
        finally:
            self._pool_waiters.remove(ev)

    def _schedule_backoff_retry(self) -> None:
        """Refill again when the earliest pool backoff ends (a crash-looping profile retries slowly)."""
        if self._refill_timer is not None:
            self._refill_timer.cancel()
            self._refill_timer = None
        pending = [b.retry_at for k, b in self.backoff.items() if k.startswith("pool:")]
        if pending and not self._tasks.closed:
            delay = max(0.0, min(pending) - time.monotonic())
            self._refill_timer = asyncio.get_running_loop().call_later(delay, self.refill_pool)

    async def wait_pool_ready(self, timeout: float | None = None) -> None:
        """Wait until the warm pool is at its target size (used by ``sparkgate up`` and tests)."""

        async def _wait() -> None:
            while len(self.warm()) < self.pool_size:
                ev = asyncio.Event()
                self._pool_waiters.append(ev)
                try:
                    await asyncio.wait_for(ev.wait(), timeout=1.0)
                except TimeoutError:
                    pass
                finally:
                    self._pool_waiters.remove(ev)

        await asyncio.wait_for(_wait(), timeout)
