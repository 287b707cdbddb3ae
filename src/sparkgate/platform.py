"""Wiring: settings in, running services out.

:class:`Platform` builds the pieces named in the configuration — the cluster provider, the cluster
manager with its warm pool, and the gateway — and owns their lifecycle in the right order
(drivers outlive the gateway's drain; on exit, drivers are stopped unless told otherwise).
Entry points (``sparkgate up``, ``sparkgate gateway``, tests) use this instead of assembling parts.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from prometheus_client import generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from sparkgate.admin.http import AdminServer
from sparkgate.clusters import placement
from sparkgate.clusters.base import ClusterProvider, DriverSpec, DriverState
from sparkgate.clusters.local import LocalProvider
from sparkgate.clusters.manager import ClusterManager
from sparkgate.config import GatewaySettings, Settings
from sparkgate.errors import ConfigError, DriverStartError
from sparkgate.gateway.h2.buffers import SLAB_BYTES
from sparkgate.gateway.server import Gateway
from sparkgate.playground.app import create_app
from sparkgate.playground.server import PlaygroundServer
from sparkgate.runner.backends import kubernetes_backend
from sparkgate.runner.backends.local import LocalBackend
from sparkgate.runner.server import RunnerServer
from sparkgate.runner.service import Runner
from sparkgate.runner.store import JobStore, database_url
from sparkgate.sampledata import write_sample_catalog
from sparkgate.security.authz import PLATFORM_GROUP
from sparkgate.security.identity import Identity
from sparkgate.spark.plugin import default_plugin_dir

#: Who the runner's pool jobs are on the gateway when auth is on.
RUNNER_IDENTITY = "sparkgate-runner"

log = logging.getLogger(__name__)


def build_provider(settings: Settings) -> ClusterProvider:
    providers = {env.provider for env in settings.environments.values()}
    if len(providers) > 1:
        raise ConfigError(
            f"environments use providers {sorted(providers)}: one gateway serves one provider "
            "(set environments.<env>.provider alike, or run a gateway per provider)"
        )
    g = settings.gateway
    if providers == {"kubernetes"}:
        try:
            from sparkgate.clusters.kubernetes import KubernetesProvider
        except ImportError as exc:  # (lightkube: the kubernetes extra)
            raise ConfigError(f"provider kubernetes needs pip install 'sparkgate[kubernetes]': {exc}") from None
        return KubernetesProvider(
            settings.kubernetes,
            profiles=settings.pool.all_profiles(),
            max_message_bytes=g.max_message_bytes,
            reattach_buffer_bytes=reattach_buffer_bytes(g),
        )
    return LocalProvider(
        settings.local,
        settings.state_dir,
        max_message_bytes=g.max_message_bytes,
        reattach_buffer_bytes=reattach_buffer_bytes(g),
    )


def reattach_buffer_bytes(gateway: GatewaySettings) -> int:
    """What a driver keeps of the results it sent, for clients that reattach (through another
    gateway replica, when the one relaying them died): all that replica may have held for the
    client's connection (``gateway.http2.relay_window_bytes_per_connection``), and 32 MiB for the
    sockets' and the client's own buffers."""
    return gateway.http2.relay_window_bytes_per_connection + 32 * 1024 * 1024


class Platform:
    """``async with Platform(settings) as p:`` starts the provider, the pool and the gateway."""

    def __init__(
        self,
        settings: Settings,
        *,
        provider: ClusterProvider | None = None,
        stop_drivers_on_exit: bool = True,
    ) -> None:
        self.settings = settings
        self.provider = provider if provider is not None else build_provider(settings)
        pool = settings.pool
        self.clusters = ClusterManager(
            self.provider,
            profiles=pool.all_profiles(),
            profile_for=settings.profile_for,
            catalogs=settings.profile_catalogs(),
            placement=placement.policy(pool.placement),
            max_drivers=settings.max_drivers(),
            sessions_per_driver=pool.sessions_per_driver,
            health=settings.health,
            driver_idle_ttl=pool.driver_idle_ttl_seconds,
            quotas=settings.quotas,
            start_backoff=(pool.start_backoff_seconds, pool.start_backoff_max_seconds),
            reconcile_interval=pool.reconcile_interval_seconds,
        )
        self.gateway = Gateway(settings, self.clusters)
        self.stop_drivers_on_exit = stop_drivers_on_exit
        a = settings.admin
        self.admin = (
            AdminServer(
                a.host,
                a.port,
                {
                    "/status": self._status,
                    "/healthz": self._healthz,
                    "/readyz": self._readyz,
                    "/metrics": self._metrics,
                },
            )
            if a.enabled
            else None
        )
        self.runner: Runner | None = None
        self.runner_server: RunnerServer | None = None
        self.playground: PlaygroundServer | None = None
        self.registry = self.gateway.telemetry.registry
        self.registry.register(_PlatformCollector(self))

    async def __aenter__(self) -> Platform:
        self._check_profiles()
        await self.provider.__aenter__()
        try:
            await self.clusters.start()
            await self.gateway.start()
            if self.settings.runner.enabled:
                await self._start_runner()
                if self.settings.playground.enabled:
                    await self._start_playground()
            if self.admin is not None:
                await self.admin.start()
        except BaseException:
            await self._shutdown()
            raise
        return self

    def _check_profiles(self) -> None:
        """Fail at start, not in a crash loop, when the provider cannot run a profile."""
        check = self.provider.check_spec
        for name, p in self.clusters.profiles.items():
            try:
                check(DriverSpec(profile=name, spark_conf=p.spark_conf, spark_version=p.spark_version))
            except DriverStartError as exc:
                raise ConfigError(str(exc)) from None

    async def __aexit__(self, *exc: Any) -> None:
        await self._shutdown()

    async def _start_runner(self) -> None:
        r, s = self.settings.runner, self.settings
        backend = kubernetes_backend(s) if r.backend == "kubernetes" else await self._local_backend()
        store = JobStore(database_url(r.database_url, s.state_dir))
        self.runner = Runner(
            r, store, backend, list(s.environments), data_roots={n: e.data_roots for n, e in s.environments.items()}
        )
        await self.runner.start()
        self.runner_server = RunnerServer(self.runner, r.host, r.port, guard=self.gateway.guard)
        await self.runner_server.start()

    async def _local_backend(self) -> LocalBackend:
        """Jobs as processes here: on the pool's drivers through this gateway, or their own."""
        r, s = self.settings.runner, self.settings
        catalog = s.state_path(r.catalog_dir)
        if not (catalog / "samples").is_dir():
            await asyncio.to_thread(write_sample_catalog, catalog)
        token = None
        if self.gateway.guard.enabled:
            # The runner's pool jobs reach the gateway as the platform's own service.
            token = secrets.token_urlsafe(32)
            who = Identity(RUNNER_IDENTITY, frozenset({PLATFORM_GROUP}), "token")
            self.gateway.guard.add_service_token(token, who)
            if s.tls.enabled and not r.gateway_ca_file:
                log.warning("TLS is on but runner.gateway_ca_file is not set: pool jobs may not trust the gateway")
        # pyspark sends a token over plaintext only to the literal host "localhost".
        host = "localhost" if token or s.tls.enabled else "127.0.0.1"
        return LocalBackend(
            s.state_path("jobs"),
            gateway_url=f"sc://{host}:{self.gateway.port}",
            gateway_token=token,
            gateway_tls=s.tls.enabled,
            gateway_ca_file=Path(r.gateway_ca_file) if r.gateway_ca_file else None,
            default_driver=r.local_driver,
            catalog_root=catalog,
            plugin_dir=default_plugin_dir(),
            spark_home=Path(s.local.spark_home) if s.local.spark_home else None,
            ui_lookup=self._ui_for_session,
        )

    def _ui_for_session(self, user: str, session_id: str) -> str | None:
        route = self.gateway.store.get((user, session_id))
        driver = self.clusters.get(route.driver_id) if route is not None else None
        return driver.ui_url if driver is not None else None

    async def _start_playground(self) -> None:
        assert self.runner_server is not None
        pg = self.settings.playground
        app = create_app(self.settings, f"127.0.0.1:{self.runner_server.port}", guard=self.gateway.guard)
        self.playground = PlaygroundServer(app, pg.host, pg.port)
        await self.playground.start()

    async def _shutdown(self) -> None:
        if self.playground is not None:
            await self.playground.stop()
        if self.runner_server is not None:
            await self.runner_server.stop()
        if self.runner is not None:
            # Local jobs would lose this gateway anyway; jobs on Kubernetes run on, and are adopted.
            await self.runner.close(stop_jobs=self.settings.runner.backend == "local")
        if self.admin is not None:
            await self.admin.stop()
        try:
            await self.gateway.stop()
        finally:
            try:
                await self.clusters.close(stop_drivers=self.stop_drivers_on_exit)
            finally:
                await self.provider.__aexit__(None, None, None)

    # -- operator endpoints ---------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """Pools, drivers and sessions as the gateway sees them (``/status``, ``sparkgate status``)."""
        now = time.time()
        cm = self.clusters
        health = cm.health
        drivers = []
        for d in sorted(cm.drivers(), key=lambda x: x.started_at):
            info = d.to_dict()
            info["suspect"] = bool(health is not None and health.suspect(d))
            drivers.append(info)
        sessions = [
            {
                "user": r.user_id,
                "session_id": r.session_id,
                "driver": r.driver_id,
                "team": r.team,
                "environment": r.environment,
                "owner": r.owner,
                "age_seconds": round(now - r.created_at, 1),
                "idle_seconds": round(now - r.last_used, 1),
            }
            for r in self.gateway.store.all()
        ]
        return {
            "gateway": {
                "port": self.gateway.port,
                "replica": self.gateway.replica_id,
                # Whether this gateway looks after the driver fleet now (fills the pool, stops idle drivers).
                "leader": self.clusters.leadership.is_leader(),
            },
            "replicas": self.gateway.replicas,
            "runner": {"port": self.runner_server.port} if self.runner_server is not None else None,
            "playground": {"port": self.playground.port} if self.playground is not None else None,
            "pool": {
                "target": cm.pool_size,
                "warm": len(cm.warm()),
                "sessions_per_driver": cm.sessions_per_driver,
                "placement": cm.placement.name,
                "profiles": {
                    name: {
                        "target": p.size,
                        "warm": len(cm.warm(name)),
                        "spark_version": p.spark_version,
                        "spark_conf": p.spark_conf,
                    }
                    for name, p in sorted(cm.profiles.items())
                },
            },
            "limits": {"max_drivers": cm.max_drivers},
            "class_archive": cm.provider.class_archive_status(),
            "start_failures": {key: b.to_dict() for key, b in cm.backoff.items()},
            "drivers": drivers,
            "sessions": sessions,
            "recently_dead": dict(cm.dead),
        }

    async def _status(self) -> tuple[int, Any]:
        return 200, self.status()

    async def _metrics(self) -> tuple[int, Any]:
        return 200, generate_latest(self.registry).decode()

    async def _healthz(self) -> tuple[int, Any]:
        return 200, {"ok": True}

    async def _readyz(self) -> tuple[int, Any]:
        """Ready: listening, and a driver is ready or may be started. Shared state out of reach is
        reported, not made unready: it is out of reach for every replica alike, sessions already
        placed go on without it, and a Service with no ready replica would refuse those too."""
        ready = any(d.state is DriverState.READY for d in self.clusters.drivers())
        can_start = len(self.clusters.drivers()) < self.clusters.max_drivers
        state = await self.gateway.store.reachable()
        ok = self.gateway.port > 0 and (ready or can_start)
        return (200 if ok else 503), {"ready": ok, "drivers_ready": ready, "state_reachable": state}


class _PlatformCollector(Collector):
    """Gauges read from the live platform at scrape time (nothing to keep in step on the hot path)."""

    def __init__(self, platform: Platform) -> None:
        self.platform = platform

    def describe(self) -> list[Metric]:
        return []  # collect() reads live state; nothing to check at registration

    def collect(self) -> Iterator[Metric]:
        p = self.platform
        cm = p.clusters
        sessions = GaugeMetricFamily(
            "sparkgate_sessions", "Sessions routed to a driver, by team and environment", labels=["team", "environment"]
        )
        for (team, env), n in sorted(Counter((r.team, r.environment) for r in p.gateway.store.all()).items()):
            sessions.add_metric([team, env], n)
        yield sessions
        drivers = GaugeMetricFamily(
            "sparkgate_drivers",
            "Drivers by state, profile and whether they wait in the warm pool",
            labels=["state", "profile", "pool"],
        )
        by_state = Counter((d.state.value, d.profile, str(d.namespace == "").lower()) for d in cm.drivers())
        for (state, profile, pool), n in sorted(by_state.items()):
            drivers.add_metric([state, profile, pool], n)
        yield drivers
        warm = GaugeMetricFamily("sparkgate_pool_warm", "Warm drivers ready, by profile", labels=["profile"])
        target = GaugeMetricFamily("sparkgate_pool_target", "Warm drivers wanted, by profile", labels=["profile"])
        for name, prof in sorted(cm.profiles.items()):
            warm.add_metric([name], len(cm.warm(name)))
            target.add_metric([name], prof.size)
        yield warm
        yield target
        yield CounterMetricFamily(
            "sparkgate_auth_failures",
            "Calls refused for missing or invalid credentials",
            value=p.gateway.guard.failures,
        )
        yield CounterMetricFamily(
            "sparkgate_driver_deaths", "Drivers found dead since the gateway started", value=cm.deaths
        )
        buffers = p.gateway.relay_buffers
        if buffers is not None:
            yield GaugeMetricFamily(
                "sparkgate_relay_buffer_bytes",
                "Read buffers the h2 relay keeps for reuse (slabs still referenced by queued data are not counted)",
                value=buffers.kept_bytes,
            )
            yield CounterMetricFamily(
                "sparkgate_relay_buffers_allocated",
                f"Read buffers ({SLAB_BYTES >> 20} MiB slabs) the h2 relay allocated; a steady rise means data "
                "waits on slow readers",
                value=buffers.slabs_made,
            )
