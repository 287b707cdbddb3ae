"""The h2 engine's listener: accepts client connections and stops them gracefully.

Graceful stop: stop accepting, send every client GOAWAY (streams already started run on; new ones
are refused so the client retries elsewhere), wait up to the grace period for the streams in
flight, then close what is left, cancel routing work and close the driver connections.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import socket
import ssl as ssl_module
import time
from ssl import SSLContext

from sparkgate.aio import TaskSupervisor, wait_readable
from sparkgate.config import GatewaySettings
from sparkgate.gateway.h2.budget import SharedBudgets
from sparkgate.gateway.h2.buffers import ReadArena, arena
from sparkgate.gateway.h2.downstream import ClientConnection
from sparkgate.gateway.h2.relay import CallRelay
from sparkgate.gateway.h2.upstream import DriverPool
from sparkgate.gateway.pipeline.decide import CallPipeline

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
    def __init__(
        self, settings: GatewaySettings, pipeline: CallPipeline, pool: DriverPool, ssl: SSLContext | None = None
    ) -> None:
        self.settings = settings
        self.ssl = ssl
        self.pool = pool
        self._tasks = TaskSupervisor("h2")
        self.relay = CallRelay(pipeline, self.pool, settings.max_message_bytes, self._tasks)
        self._connections: set[ClientConnection] = set()
        self.max_connections = settings.http2.max_connections
        self._server: asyncio.Server | None = None
        #: With TLS: the listening socket, and the task accepting on it (see :meth:`_accept_loop`).
        self._listener: socket.socket | None = None
        self._accepting: asyncio.Task[None] | None = None
        self._handshakes = 0
        #: What all client connections share: held first messages, stream windows.
        self.budgets = SharedBudgets(settings.http2)
        self._stopped: asyncio.Event | None = None
        self.port = 0
        #: The read buffers of the loop thread the engine serves on (set by :meth:`start`), for metrics.
        self.buffers: ReadArena | None = None

    def _accept(self, *, cleartext_on_tls: bool = False) -> ClientConnection:
        conn = ClientConnection(self.relay, self.settings.http2, self._connections, self.budgets)
        if cleartext_on_tls:
            conn.tls_required = (
                "this gateway speaks TLS and the client connected without it: add use_ssl=true to the "
                f"connection string (sc://HOST:{self.port}/;use_ssl=true)"
            )
        if len(self._connections) >= self.max_connections and not self._reclaim_idle():
            conn.refuse = (
                f"the gateway has {len(self._connections)} client connections with calls in flight, its "
                "limit (gateway.http2.max_connections); retry later"
            )
        return conn

    def _reclaim_idle(self) -> bool:
        """At the connection cap, make room by closing the connection idle the longest (no call in
        it: GOAWAY NO_ERROR, its client reconnects when it next calls), as nginx reuses idle
        keep-alive connections when it runs out. False if every connection has a call in flight."""
        idle = [c for c in self._connections if not c.streams and c.transport is not None and c.refuse is None]
        if not idle:
            return False
        min(idle, key=lambda c: c.idle_since).reclaim()
        return True

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
        if self.ssl is None:
            self._server = await loop.create_server(
                self._accept, self.settings.host, self.settings.port, reuse_port=self.settings.reuse_port or None
            )
            self.port = self._server.sockets[0].getsockname()[1]
        else:
            self._listener = _listen(self.settings.host, self.settings.port, reuse_port=self.settings.reuse_port)
            self.port = self._listener.getsockname()[1]
            self._accepting = self._tasks.spawn("accept", self._accept_loop(self._listener))
        self._tasks.every("connection-sweep", 1.0, self._check_timeouts)

    async def _accept_loop(self, listener: socket.socket) -> None:
        """Accept TLS connections ourselves, to look at each one's first byte before its handshake:
        a client speaking cleartext HTTP/2 to this port is answered, with every call failing with
        a message naming the fix, instead of a dropped connection it would retry for ever."""
        loop = asyncio.get_running_loop()
        while True:
            try:
                sock, _ = await loop.sock_accept(listener)
            except OSError as exc:  # out of file descriptors, say: the next one may work
                log.warning("accepting a client connection failed: %s", exc)
                await asyncio.sleep(0.1)
                continue
            if len(self._connections) + self._handshakes >= self.max_connections and not self._reclaim_idle():
                sock.close()  # connections still in their handshake count too
                continue
            self._tasks.spawn("tls-handshake", self._serve_tls(sock))

    async def _serve_tls(self, sock: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        timeout = self.settings.http2.handshake_timeout_seconds
        sock.setblocking(False)
        self._handshakes += 1
        try:
            first = await asyncio.wait_for(_peek(sock), timeout)
            # A TLS connection starts with a handshake record (0x16); anything else, cleartext.
            cleartext = bool(first) and first != b"\x16"
            await loop.connect_accepted_socket(
                lambda: self._accept(cleartext_on_tls=cleartext),
                sock,
                ssl=None if cleartext else self.ssl,
                ssl_handshake_timeout=None if cleartext else timeout,
            )
        except (OSError, ssl_module.SSLError, TimeoutError) as exc:
            log.info("client connection closed before it was served: %s", exc or type(exc).__name__)
            sock.close()
        except BaseException:  # cancelled (the engine stops): the socket is ours to close
            sock.close()
            raise
        finally:
            self._handshakes -= 1

    async def _check_timeouts(self) -> None:
        now = time.monotonic()
        for conn in list(self._connections):
            try:
                conn.check_timeouts(now)
            except Exception:
                log.exception("checking a client connection's timeouts")
        if self.buffers is not None:
            self.buffers.shed()  # read buffers a burst left behind go back to the system

    async def wait(self) -> None:
        if self._stopped is not None:
            await self._stopped.wait()

    async def stop(self, grace: float) -> None:
        if self._server is None and self._listener is None:
            return
        server, self._server = self._server, None
        listener, self._listener = self._listener, None
        if server is not None:
            server.close()
        if self._accepting is not None:
            self._accepting.cancel()
        if listener is not None:
            listener.close()
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
        if server is not None:
            await server.wait_closed()
        if self._stopped is not None:
            self._stopped.set()


def _listen(host: str, port: int, *, reuse_port: bool = False) -> socket.socket:
    """A non-blocking listening socket, bound as ``loop.create_server`` would bind it."""
    family, kind, proto, _, address = socket.getaddrinfo(
        host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
        sock.listen(1024)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


async def _peek(sock: socket.socket) -> bytes:
    """The first byte the peer sent, left in the socket for whoever reads next (b"": closed)."""
    await wait_readable(sock.fileno())
    return sock.recv(1, socket.MSG_PEEK)
