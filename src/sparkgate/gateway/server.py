"""The Spark Gateway service: a gRPC server on :15002 speaking the Spark Connect protocol.

Assembles the parts — affinity store, session table, call pipeline, the HTTP/2 relay (:mod:`sparkgate.gateway.h2`)
— around a :class:`~sparkgate.clusters.manager.ClusterManager` it is given (the cluster layer's
lifecycle is its owner's: ``sparkgate up`` stops drivers on exit, a restarting gateway leaves them
running).
"""

from __future__ import annotations

import asyncio
import ctypes
import importlib.metadata
import logging
import socket
import time
import uuid
from typing import Any

from sparkgate.aio import TaskSupervisor
from sparkgate.clusters.base import Driver
from sparkgate.clusters.leader import Lease
from sparkgate.clusters.manager import ClusterManager
from sparkgate.config import Settings
from sparkgate.errors import ConfigError, Unavailable
from sparkgate.gateway.affinity import AffinityStore, MemoryAffinityStore
from sparkgate.gateway.affinity_redis import RedisAffinityStore
from sparkgate.gateway.affinity_sqlite import SqliteAffinityStore
from sparkgate.gateway.h2 import H2Engine
from sparkgate.gateway.h2.buffers import ReadArena
from sparkgate.gateway.h2.upstream import DriverPool
from sparkgate.gateway.lease_redis import RedisFleet, RedisLease
from sparkgate.gateway.pipeline.decide import CallPipeline
from sparkgate.gateway.ratelimit_redis import RedisRateLimits
from sparkgate.gateway.sessions import SessionBook
from sparkgate.gateway.telemetry import Telemetry
from sparkgate.security.guard import Guard, build_guard
from sparkgate.security.tls import ServerTls

log = logging.getLogger(__name__)


def _version() -> str:
    try:
        return importlib.metadata.version("sparkgate")
    except importlib.metadata.PackageNotFoundError:  # (run from a source tree)
        return "dev"


#: Seconds between a gateway's announcements to the replicas sharing its state (gone after three missed).
HEARTBEAT_SECONDS = 5.0


def build_affinity_store(settings: Settings) -> AffinityStore:
    if settings.state.backend == "redis":
        # Other replicas tell Redis of their sessions' use once per sweep: give them that long.
        return RedisAffinityStore(settings.state, touch_margin=settings.gateway.affinity.sweep_interval_seconds)
    aff = settings.gateway.affinity
    if aff.backend == "memory":
        return MemoryAffinityStore()
    return SqliteAffinityStore(settings.state_path(aff.path))


# glibc mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3


def tune_allocator() -> bool:
    """Keep freed multi-MiB buffers in the heap instead of returning them to the kernel.

    glibc serves allocations above its mmap threshold with ``mmap`` and frees them with
    ``munmap``, so code that allocates and frees multi-MiB buffers again and again (whole messages
    held while a session is placed, TLS records, the driver connections' reads) pays page faults
    on brand-new memory each time. Raising the mmap threshold to glibc's maximum (32 MiB) and the
    trim threshold to 64 MiB lets those buffers be reused, for at most 64 MiB of freed memory kept
    per malloc arena. The relay's own read buffers are memory maps of their own and not affected.
    Process-wide; a no-op (returns False) where glibc's ``mallopt`` is not available.
    """
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mmap_ok: bool = mallopt(_M_MMAP_THRESHOLD, 32 * 1024 * 1024) == 1
    trim_ok: bool = mallopt(_M_TRIM_THRESHOLD, 64 * 1024 * 1024) == 1
    return mmap_ok and trim_ok


class Gateway:
    """Run with ``async with Gateway(settings, clusters) as gw: ... await gw.wait()``."""

    def __init__(
        self,
        settings: Settings,
        clusters: ClusterManager,
        *,
        store: AffinityStore | None = None,
        guard: Guard | None = None,
    ) -> None:
        self.settings = settings
        self.clusters = clusters
        self.store = store if store is not None else build_affinity_store(settings)
        self.guard = guard if guard is not None else build_guard(settings)
        #: Metrics and audit of calls and sessions: the pipeline's hook.
        self.telemetry = Telemetry(audit=self.guard.audit)
        #: Connections to drivers: clients' calls, the gateway's own (releases, health probes).
        self.pool = DriverPool()
        self.sessions = SessionBook(settings.gateway, self.store, clusters, self.telemetry, self.pool)
        #: The state replicas share (``state.backend: redis``), or None for a gateway on its own.
        self.shared_state = self.store if isinstance(self.store, RedisAffinityStore) else None
        shared_limits = None
        if settings.rate_limits.mode == "exact":
            if self.shared_state is None:
                raise ConfigError("rate_limits.mode: exact counts calls in Redis: it needs state.backend: redis")
            shared_limits = RedisRateLimits(self.shared_state, settings.rate_limits, fallback=self.guard.limits)
        self.pipeline = CallPipeline(
            settings.gateway, settings.environments, self.sessions, self.guard, shared_limits=shared_limits
        )
        self.tls = ServerTls(settings.tls) if settings.tls.enabled else None
        self._h2: H2Engine | None = None
        self._tasks = TaskSupervisor("gateway")
        self.port = 0
        #: This gateway among the replicas sharing state, and the replicas alive at the last heartbeat.
        self.replica_id = uuid.uuid4().hex[:12]
        self.started_at = time.time()
        self.replicas: list[dict[str, Any]] = []
        #: Gateways sharing the fleet: the one holding this lease fills the pool and stops idle
        #: drivers. Set before the cluster manager starts, so no replica fills the pool unelected.
        self.lease: Lease | None = None
        if self.shared_state is not None:  # (the lease beside the session counts fences each stop)
            self.lease = RedisLease(self.shared_state, self.replica_id, on_elected=clusters.refill_pool)
        else:
            self.lease = clusters.provider.fleet_lease(self.replica_id, clusters.refill_pool)
        if self.lease is not None:
            clusters.leadership = self.lease
        if self.shared_state is not None:
            clusters.fleet = RedisFleet(self.shared_state, self.replica_id)
            self.shared_state.on_driver_event = self._driver_event
            clusters.on_driver_dead(self._announce_dead)
        clusters.on_driver_dead(self.sessions.driver_died)

    async def __aenter__(self) -> Gateway:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        g = self.settings.gateway
        await self.guard.__aenter__()
        await self.store.__aenter__()
        self.sessions.restore()
        tune_allocator()
        self._h2 = H2Engine(g, self.pipeline, self.pool, self.tls.ssl_context() if self.tls is not None else None)
        await self._h2.start()
        self.port = self._h2.port
        if self.clusters.health is not None:
            self.clusters.health.use(self.pool)  # probes share the relay's driver connections
        self._tasks.every("sweep", g.affinity.sweep_interval_seconds, self.sessions.sweep)
        self._tasks.every("rate-limit-sweep", 60.0, self._sweep_limits)
        await self._heartbeat()
        self._tasks.every("heartbeat", HEARTBEAT_SECONDS, self._heartbeat)
        if self.lease is not None:
            await self.lease.campaign()
            self._tasks.every("fleet-lease", self.lease.lease_seconds / 3, self.lease.campaign)
        if self.tls is not None:
            self._tasks.every("tls-reload", self.settings.tls.reload_interval_seconds, self._reload_tls)
        log.info(
            "Spark Gateway listening on %s:%d (%s, auth %s)",
            g.host,
            self.port,
            "TLS" + (" + optional mTLS" if self.tls and self.tls.client_ca else "") if self.tls else "plaintext",
            self.settings.auth.mode,
        )

    async def _reload_tls(self) -> None:
        if self.tls is not None:
            await asyncio.to_thread(self.tls.reload_if_changed)

    async def _heartbeat(self) -> None:
        """Tell the gateways sharing state that this one is alive, and hear which others are: rate
        limits are split among them."""
        me = {
            "id": self.replica_id,
            "address": f"{socket.gethostname()}:{self.port}",
            "version": _version(),
            "sessions": len(self.store.all()),
            "started_at": self.started_at,
            "leader": self.clusters.leadership.is_leader(),
        }
        try:
            self.replicas = await self.store.replicas(me, 3 * HEARTBEAT_SECONDS)
        except Unavailable as exc:
            log.warning("heartbeat not shared: %s", exc.message)
            return
        self.guard.limits.share(len(self.replicas))

    async def _sweep_limits(self) -> None:
        self.guard.limits.sweep()

    @property
    def relay_buffers(self) -> ReadArena | None:
        """The relay's read buffers (None before start)."""
        return self._h2.buffers if self._h2 is not None else None

    async def wait(self) -> None:
        if self._h2 is not None:
            await self._h2.wait()

    def _driver_event(self, driver_id: str, state: str) -> None:
        """Another replica found a driver dead (see for ourselves now, not at the next probe
        round), or is stopping it (no new session goes there)."""
        if state == "dead":
            self.clusters.report_unreachable(driver_id)
        elif state == "stopping":
            self.clusters.drain(driver_id, "another gateway is stopping it", stopping=True)

    async def _announce_dead(self, driver: Driver, why: str) -> None:
        if self.shared_state is None:
            return
        try:
            await self.shared_state.announce_driver(driver.id, "dead")
        except Unavailable as exc:
            log.warning("could not tell the other gateways that driver %s died: %s", driver.id, exc.message)

    async def leave(self) -> bool:
        """Stop announcing this gateway to the others sharing its state; whether it was the last
        one (then nothing else serves the drivers: they may be stopped). Unsure: not the last."""
        try:
            return await self.store.leave(self.replica_id) == 0
        except Unavailable as exc:
            log.warning("could not tell the other gateways this one is leaving: %s", exc.message)
            return False

    async def stop(self, grace: float | None = None) -> None:
        grace = self.settings.gateway.drain_seconds if grace is None else grace
        if self.clusters.health is not None and self.clusters.health.calls is self.pool:
            self.clusters.health.use(None)  # the cluster manager may outlive this gateway
        await self._tasks.close()  # (sweeps release sessions over the driver connections)
        if self.lease is not None:
            await self.lease.release()  # (another gateway looks after the fleet at once)
        if self._h2 is not None:
            await self._h2.stop(grace)
            self._h2 = None
        for placing in list(self.sessions.placing.values()):
            placing.cancel()  # drivers still starting for sessions no call waits for any more
        await self.store.__aexit__(None, None, None)
        await self.guard.__aexit__(None, None, None)
