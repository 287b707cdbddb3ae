"""The h2 engine's listener: accepts client connections and stops them gracefully.

Graceful stop: stop accepting, send every client GOAWAY (streams already started run on; new ones
are refused so the client retries elsewhere), wait up to the grace period for the streams in
flight, then close what is left, cancel routing work and close the driver connections.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import time
from ssl import SSLContext

from sparkgate.aio import TaskSupervisor
from sparkgate.config import GatewaySettings
from sparkgate.gateway.h2.buffers import ReadArena, arena
from sparkgate.gateway.h2.downstream import ClientConnection
from sparkgate.gateway.h2.relay import H2Relay
from sparkgate.gateway.h2.upstream import DriverPool
from sparkgate.gateway.sessions import SessionRouter

log = logging.getLogger(__name__)

#: Open files kept for everything but client connections (drivers, logs, databases, listeners).
RESERVED_FILES = 256


def raise_open_file_limit() -> int:
    """Raise this process's open-file limit to its hard limit (what nginx's worker_rlimit_nofile
    is for); the limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
    if soft != resource.RLIM_INFINITY and soft < want:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
            soft = want
        except (ValueError, OSError):
            pass
    return soft if soft != resource.RLIM_INFINITY else 1 << 20


class H2Engine:
    def __init__(self, settings: GatewaySettings, router: SessionRouter, ssl: SSLContext | None = None) -> None:
        self.settings = settings
        self.ssl = ssl
        self.pool = DriverPool()
        self._tasks = TaskSupervisor("h2")
        self.relay = H2Relay(router, self.pool, settings.max_message_bytes, self._tasks)
        self._connections: set[ClientConnection] = set()
        self.max_connections = settings.http2.max_connections
        self._server: asyncio.Server | None = None
        self._stopped: asyncio.Event | None = None
        self.port = 0
        #: The read buffers of the loop thread the engine serves on (set by :meth:`start`), for metrics.
        self.buffers: ReadArena | None = None

    def _accept(self) -> ClientConnection:
        conn = ClientConnection(self.relay, self.settings.http2, self._connections)
        if len(self._connections) >= self.max_connections:
            conn.refuse = (
                f"the gateway has {len(self._connections)} client connections, its limit "
                "(gateway.http2.max_connections); retry later"
            )
        return conn

    @property
    def connections(self) -> list[ClientConnection]:
        return [c for c in self._connections if c.transport is not None]

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._stopped = asyncio.Event()
        self.buffers = arena()
        files = raise_open_file_limit()
        self.max_connections = max(1, min(self.settings.http2.max_connections, files - RESERVED_FILES))
        if self.max_connections < self.settings.http2.max_connections:
            log.warning(
                "at most %d client connections: the open-file limit is %d (gateway.http2.max_connections is %d)",
                self.max_connections,
                files,
                self.settings.http2.max_connections,
            )
        self._server = await loop.create_server(self._accept, self.settings.host, self.settings.port, ssl=self.ssl)
        self.port = self._server.sockets[0].getsockname()[1]
        self._tasks.every("connection-timeouts", 1.0, self._check_timeouts)

    async def _check_timeouts(self) -> None:
        now = time.monotonic()
        for conn in list(self._connections):
            try:
                conn.check_timeouts(now)
            except Exception:
                log.exception("checking a client connection's timeouts")

    async def wait(self) -> None:
        if self._stopped is not None:
            await self._stopped.wait()

    async def stop(self, grace: float) -> None:
        if self._server is None:
            return
        server, self._server = self._server, None
        server.close()
        conns = self.connections
        for conn in conns:
            conn.drain()
        pending = [c for c in conns if not c.closed.is_set()]
        if pending and grace > 0:
            waits = [asyncio.ensure_future(c.closed.wait()) for c in pending]
            _, left = await asyncio.wait(waits, timeout=grace)
            for w in left:
                w.cancel()
            if left:
                log.warning("%d client connection(s) still busy after %.1fs; closing them", len(left), grace)
        for conn in self.connections:
            conn.abort()
        await self._tasks.close()
        await self.pool.close()
        await server.wait_closed()
        if self._stopped is not None:
            self._stopped.set()
