"""Wiring: settings in, running services out.

:class:`Platform` builds the pieces named in the configuration — the cluster provider, the cluster
manager with its warm pool, and the gateway — and owns their lifecycle in the right order
(drivers outlive the gateway's drain; on exit, drivers are stopped unless told otherwise).
Entry points (``sparkgate up``, ``sparkgate gateway``, tests) use this instead of assembling parts.
"""

from __future__ import annotations

import logging
from typing import Any

from sparkgate.clusters.base import ClusterProvider
from sparkgate.clusters.local import LocalProvider
from sparkgate.clusters.manager import ClusterManager
from sparkgate.config import Settings
from sparkgate.gateway.server import Gateway

log = logging.getLogger(__name__)


def build_provider(settings: Settings) -> ClusterProvider:
    providers = {env.provider for env in settings.environments.values()}
    if providers != {"local"}:  # pragma: no cover - only 'local' exists so far
        raise NotImplementedError(f"providers {sorted(providers)} are not available yet")
    return LocalProvider(settings.local, settings.state_dir, max_message_bytes=settings.gateway.max_message_bytes)


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
        self.clusters = ClusterManager(
            self.provider,
            pool_size=settings.pool.size,
            max_drivers=settings.local.max_drivers,
            sessions_per_driver=settings.pool.sessions_per_driver,
            health=settings.health,
            env_spark_conf={name: env.spark_conf for name, env in settings.environments.items()},
        )
        self.gateway = Gateway(settings, self.clusters)
        self.stop_drivers_on_exit = stop_drivers_on_exit

    async def __aenter__(self) -> Platform:
        await self.provider.__aenter__()
        try:
            await self.clusters.start()
            await self.gateway.start()
        except BaseException:
            await self._shutdown()
            raise
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self._shutdown()

    async def _shutdown(self) -> None:
        try:
            await self.gateway.stop()
        finally:
            try:
                await self.clusters.close(stop_drivers=self.stop_drivers_on_exit)
            finally:
                await self.provider.__aexit__(None, None, None)
