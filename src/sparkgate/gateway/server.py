"""The Spark Gateway service: a gRPC server on :15002 speaking the Spark Connect protocol.

Assembles the parts — affinity store, session router, relay engine — around a
:class:`~sparkgate.clusters.manager.ClusterManager` it is given (the cluster layer's lifecycle is
its owner's: ``sparkgate up`` stops drivers on exit, a restarting gateway leaves them running).
Two engines relay the calls (``gateway.engine``): ``grpc`` (grpc.aio server + channels,
:mod:`sparkgate.gateway.relay`) and ``h2`` (an HTTP/2 frame relay, :mod:`sparkgate.gateway.h2`).
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
from typing import Any

import grpc
import grpc.aio

from sparkgate.aio import TaskSupervisor
from sparkgate.clusters.base import Driver
from sparkgate.clusters.manager import ClusterManager
from sparkgate.config import Settings
from sparkgate.gateway.affinity import AffinityStore, MemoryAffinityStore
from sparkgate.gateway.affinity_sqlite import SqliteAffinityStore
from sparkgate.gateway.channels import ChannelPool
from sparkgate.gateway.h2 import H2Engine
from sparkgate.gateway.h2.buffers import ReadArena
from sparkgate.gateway.relay import Relay
from sparkgate.gateway.sessions import SessionRouter
from sparkgate.security.guard import Guard, build_guard
from sparkgate.security.tls import ServerTls

log = logging.getLogger(__name__)


def build_affinity_store(settings: Settings) -> AffinityStore:
    aff = settings.gateway.affinity
    if aff.backend == "memory":
        return MemoryAffinityStore()
    return SqliteAffinityStore(settings.state_path(aff.path))


def server_options(max_message_bytes: int) -> list[tuple[str, Any]]:
    return [
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.max_receive_message_length", max_message_bytes),
        # Two gateways must never share a port silently.
        ("grpc.so_reuseport", 0),
        # Clients (Python and JVM) send no keepalive pings, but tolerate them if a proxy does.
        ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
        ("grpc.http2.bdp_probe", 1),
    ]


# glibc mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3


def tune_allocator() -> bool:
    """Keep freed multi-MiB message buffers in the heap instead of returning them to the kernel.

    grpc hands every relayed message to Python as fresh ``bytes`` and copies it again on the way
    out. glibc serves allocations above its mmap threshold with ``mmap`` and frees them with
    ``munmap``, so each 4 MiB Arrow batch paid page faults on several brand-new buffers (about a
    tenth of the gateway's CPU in ``perf``). Raising the mmap threshold to glibc's maximum (32 MiB)
    and the trim threshold to 64 MiB lets those buffers be reused: about 20-30 % less CPU per GB
    relayed (bench/relay_bench.py), for at most 64 MiB of freed memory kept per malloc arena.
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
        self.router = SessionRouter(settings.gateway, settings.environments, self.store, clusters, self.guard)
        self.engine = settings.gateway.engine
        self.channels = ChannelPool(settings.gateway.max_message_bytes)
        self.tls = ServerTls(settings.tls) if settings.tls.enabled else None
        self.relay = Relay(self.router, self.channels, self.tls)
        self._server: grpc.aio.Server | None = None
        self._h2: H2Engine | None = None
        self._tasks = TaskSupervisor("gateway")
        self.port = 0
        clusters.on_driver_dead(self._driver_died)

    async def _driver_died(self, driver: Driver, why: str) -> None:
        await self.router.driver_died(driver, why)
        await self.channels.forget(driver.address)

    async def __aenter__(self) -> Gateway:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        g = self.settings.gateway
        await self.guard.__aenter__()
        await self.store.__aenter__()
        self.router.restore()
        tune_allocator()
        if self.engine == "h2":
            self._h2 = H2Engine(g, self.router, self.tls.ssl_context() if self.tls is not None else None)
            await self._h2.start()
            self.port = self._h2.port
        else:
            await self._start_grpc()
        self._tasks.every("sweep", g.affinity.sweep_interval_seconds, self.router.sweep)
        self._tasks.every("rate-limit-sweep", 60.0, self._sweep_limits)
        if self.tls is not None:
            self._tasks.every("tls-reload", self.settings.tls.reload_interval_seconds, self._reload_tls)
        log.info(
            "Spark Gateway listening on %s:%d (%s engine, %s, auth %s)",
            g.host,
            self.port,
            self.engine,
            "TLS" + (" + optional mTLS" if self.tls and self.tls.client_ca else "") if self.tls else "plaintext",
            self.settings.auth.mode,
        )

    async def _start_grpc(self) -> None:
        g = self.settings.gateway
        server = grpc.aio.server(options=server_options(g.max_message_bytes))
        server.add_generic_rpc_handlers((self.relay.generic_handler(),))
        address = f"{g.host}:{g.port}"
        if self.tls is not None:
            self.port = server.add_secure_port(address, self.tls.grpc_credentials())
        else:
            self.port = server.add_insecure_port(address)
        if self.port == 0:
            raise OSError(f"gateway could not listen on {g.host}:{g.port} (port in use?)")
        await server.start()
        self._server = server

    async def _reload_tls(self) -> None:
        if self.tls is not None:
            await asyncio.to_thread(self.tls.reload_if_changed)

    async def _sweep_limits(self) -> None:
        self.guard.limits.sweep()

    @property
    def relay_buffers(self) -> ReadArena | None:
        """The ``h2`` engine's read buffers (None with the ``grpc`` engine, or before start)."""
        return self._h2.buffers if self._h2 is not None else None

    async def wait(self) -> None:
        if self._server is not None:
            await self._server.wait_for_termination()
        elif self._h2 is not None:
            await self._h2.wait()

    async def stop(self, grace: float | None = None) -> None:
        grace = self.settings.gateway.drain_seconds if grace is None else grace
        if self._server is not None:
            await self._server.stop(grace)
            self._server = None
        if self._h2 is not None:
            await self._h2.stop(grace)
            self._h2 = None
        await self._tasks.close()
        await self.channels.close()
        await self.store.__aexit__(None, None, None)
        await self.guard.__aexit__(None, None, None)
