"""The driver-facing leg: one HTTP/2 client connection per driver address, shared by all sessions.

A :class:`DriverPool` opens a connection on first use and keeps it until the driver closes it,
sends GOAWAY (new streams then go to a fresh connection while in-flight ones finish on the old one)
or the connection is lost (its streams fail with UNAVAILABLE, see :mod:`.downstream`). When a
connection reaches the driver's SETTINGS_MAX_CONCURRENT_STREAMS, another one is opened beside it.

We advertise SETTINGS_HEADER_TABLE_SIZE = 0, so the driver's HPACK encoder keeps no dynamic table:
its header blocks are context-free and are forwarded to clients byte for byte. Each block is still
decoded here (with a zero-size table, so a block that references dynamic state fails loudly
instead of being misread) because the relay needs ``grpc-status`` for after-answer actions.
"""

from __future__ import annotations

import asyncio
import logging
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from sparkgate.connect.probe import DriverCallFailed, Metadata
from sparkgate.connect.service import SERVICE_PATH
from sparkgate.connect.status import STATUS_NAMES
from sparkgate.errors import Unavailable
from sparkgate.gateway.h2 import frames as f
from sparkgate.gateway.h2.budget import INITIAL_WINDOW
from sparkgate.gateway.h2.connection import DRIVER_HEADER_BLOCK, MAX_FRAME, Connection, Stream
from sparkgate.gateway.h2.frames import ErrorCode
from sparkgate.gateway.h2.hpack import REQUEST_PREFIX, Decoder, Header, HpackError, encode_header

log = logging.getLogger(__name__)

#: Seconds to wait for a TCP connection to a driver before the call fails with UNAVAILABLE.
CONNECT_TIMEOUT = 10.0
_LAST_CLIENT_STREAM_ID = 2**31 - 1
_BLOCK_CACHE_MAX = 4096
_block_cache: dict[tuple[str, str, tuple[Header, ...]], bytes] = {}


def request_block(path: str, authority: str, metadata: tuple[Header, ...]) -> bytes:
    """The HEADERS block of a gRPC request (cached: the same few calls repeat endlessly)."""
    key = (path, authority, metadata)
    block = _block_cache.get(key)
    if block is None:
        block = b"".join(
            (
                REQUEST_PREFIX,
                encode_header(":path", path),
                encode_header(":authority", authority),
                encode_header("content-type", "application/grpc"),
                encode_header("te", "trailers"),
                *(encode_header(k, v) for k, v in metadata),
            )
        )
        if len(_block_cache) < _BLOCK_CACHE_MAX:
            _block_cache[key] = block
    return block


def grpc_status(headers: Sequence[Header]) -> int | None:
    for k, v in headers:
        if k == "grpc-status":
            return int(v) if v.isdigit() else 2  # UNKNOWN
    return None


class ResponseSink(Protocol):
    """Where a driver stream's response goes: a client stream, or a gateway-made call."""

    def response_headers(self, block: bytes, headers: list[Header], end: bool) -> None: ...
    def response_data(self, payload: memoryview | bytes, end: bool) -> None: ...
    def response_failed(self, reset_code: int | None, why: str) -> None: ...


class DriverStream(Stream):
    __slots__ = ("sink",)

    def __init__(self, conn: DriverConnection, stream_id: int, sink: ResponseSink) -> None:
        super().__init__(conn, stream_id)
        self.sink = sink

    def received_headers(self, block: bytes, end: bool) -> None:  # pragma: no cover - see headers_received
        raise AssertionError("driver headers are dispatched with their decoded form")

    def received_data(self, payload: memoryview | bytes, end: bool) -> None:
        self.sink.response_data(payload, end)

    def received_reset(self, code: int) -> None:
        self.sink.response_failed(code, f"driver reset the stream ({ErrorCode(code).name if code < 14 else code})")

    def connection_lost(self) -> None:
        if not self.recv_end:
            assert isinstance(self.conn, DriverConnection)
            self.sink.response_failed(None, f"connection to driver {self.conn.address} was lost")


class DriverConnection(Connection):
    local_settings = [
        (f.SETTINGS_HEADER_TABLE_SIZE, 0),
        (f.SETTINGS_ENABLE_PUSH, 0),
        (f.SETTINGS_INITIAL_WINDOW_SIZE, INITIAL_WINDOW),
        (f.SETTINGS_MAX_FRAME_SIZE, MAX_FRAME),
    ]

    def __init__(self, address: str, pool: DriverPool) -> None:
        super().__init__()
        self.address = address
        self.pool = pool
        self.decoder = Decoder(max_table_size=0, max_header_list_size=DRIVER_HEADER_BLOCK)
        self.next_stream_id = 1
        #: Set once the driver sent GOAWAY: no new streams; closes when the last one ends.
        self.draining = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.send_frame(f.PREFACE)
        self.open_settings()

    def connection_lost(self, exc: Exception | None) -> None:
        self.pool.closed_connection(self)
        if self.streams:
            log.warning("connection to driver %s lost with %d stream(s) open: %s", self.address, len(self.streams), exc)
        super().connection_lost(exc)

    @property
    def usable(self) -> bool:
        return (
            self.transport is not None
            and not self.closing
            and not self.draining
            and len(self.streams) < self.peer_max_streams
            and self.next_stream_id < _LAST_CLIENT_STREAM_ID
        )

    def open_stream(self, block: bytes, sink: ResponseSink, *, end: bool = False) -> DriverStream:
        sid = self.next_stream_id
        self.next_stream_id += 2
        stream = DriverStream(self, sid, sink)
        self.streams[sid] = stream
        stream.send_headers(block, end)
        return stream

    def last_peer_stream_id(self) -> int:
        return 0

    def headers_received(self, sid: int, block: bytes, end: bool) -> None:
        try:
            headers = self.decoder.decode(block)
        except HpackError as err:
            # The block may depend on state we do not have: forwarding it would corrupt the client's.
            raise HpackError(f"driver header block is not context-free: {err}") from err
        stream = self.streams.get(sid)
        if not isinstance(stream, DriverStream):
            return
        if end:
            stream._mark_received_end()
        stream.sink.response_headers(block, headers, end)

    def goaway_received(self, last_stream_id: int, code: int, debug: bytes) -> None:
        log.info(
            "driver %s sent GOAWAY (%s, last stream %d): new calls use a new connection",
            self.address,
            ErrorCode(code).name if code < 14 else code,
            last_stream_id,
        )
        self.draining = True
        self.pool.closed_connection(self)
        for stream in [s for sid, s in self.streams.items() if sid > last_stream_id]:
            # Never processed by the driver: fail them so the client retries (UNAVAILABLE).
            self.close_stream(stream)
            if isinstance(stream, DriverStream):
                stream.sink.response_failed(None, f"driver {self.address} is closing its connection (GOAWAY)")
        self._close_if_drained()

    def drain(self) -> None:
        """No new streams; the connection closes once the streams in flight have ended."""
        self.draining = True
        self._close_if_drained()

    def stream_closed(self, stream: Stream | None) -> None:
        self._close_if_drained()

    def _close_if_drained(self) -> None:
        if self.draining and not self.streams and self.transport is not None:
            self.send_frame(f.goaway_frame(0, ErrorCode.NO_ERROR))
            self.loop.call_soon(self._close_transport)

    def _close_transport(self) -> None:
        if self.transport is not None:
            self.transport.close()


@dataclass(slots=True)
class UnaryResult:
    """A gateway-made unary call's outcome, with the driver's raw header blocks for relaying errors."""

    status: int
    blocks: list[bytes] = field(default_factory=list)
    message: bytes = b""
    #: The driver's ``grpc-message`` (percent-decoded), if it sent one.
    details: str = ""


class _UnaryCall:
    """Collects one driver stream's response (for a new session's held Config options)."""

    def __init__(self) -> None:
        self.future: asyncio.Future[UnaryResult] = asyncio.get_running_loop().create_future()
        self.blocks: list[bytes] = []
        self.data = bytearray()
        self.stream: DriverStream | None = None

    def response_headers(self, block: bytes, headers: list[Header], end: bool) -> None:
        self.blocks.append(block)
        if end and not self.future.done():
            status = grpc_status(headers)
            message = bytes(self.data[5:])
            details = urllib.parse.unquote(next((v for k, v in headers if k == "grpc-message"), ""))
            self.future.set_result(UnaryResult(2 if status is None else status, self.blocks, message, details))

    def response_data(self, payload: memoryview | bytes, end: bool) -> None:
        self.data += payload
        if self.stream is not None:
            self.stream.consumed(len(payload))

    def response_failed(self, reset_code: int | None, why: str) -> None:
        if not self.future.done():
            self.future.set_exception(Unavailable(why))


class DriverPool:
    """Connections to drivers by address: opened on first use, replaced when closed or draining."""

    def __init__(self) -> None:
        self._conns: dict[str, list[DriverConnection]] = {}
        self._connecting: dict[str, asyncio.Future[DriverConnection]] = {}
        self._closed = False

    def ready(self, address: str) -> DriverConnection | None:
        for conn in self._conns.get(address, ()):
            if conn.usable:
                return conn
        return None

    async def get(self, address: str) -> DriverConnection:
        if self._closed:
            raise Unavailable(f"cannot reach driver {address}: the gateway is stopping")
        conn = self.ready(address)
        if conn is not None:
            return conn
        fut = self._connecting.get(address)
        if fut is None:
            fut = asyncio.ensure_future(self._connect(address))
            self._connecting[address] = fut
            fut.add_done_callback(lambda _f: self._connecting.pop(address, None))
        conn = await asyncio.shield(fut)
        return conn if conn.usable else await self.get(address)

    async def _connect(self, address: str) -> DriverConnection:
        host, _, port = address.rpartition(":")
        loop = asyncio.get_running_loop()
        try:
            _, conn = await asyncio.wait_for(
                loop.create_connection(lambda: DriverConnection(address, self), host.strip("[]"), int(port)),
                CONNECT_TIMEOUT,
            )
        except (OSError, TimeoutError, ValueError) as exc:
            raise Unavailable(f"cannot reach driver {address}: {exc or type(exc).__name__}") from exc
        self._conns.setdefault(address, []).append(conn)
        return conn

    def closed_connection(self, conn: DriverConnection) -> None:
        """A connection closed (or draining): no new streams go on it."""
        conns = self._conns.get(conn.address)
        if conns and conn in conns:
            conns.remove(conn)
            if not conns:
                del self._conns[conn.address]

    async def unary(self, address: str, method: str, request: bytes, metadata: Metadata, timeout: float) -> bytes:
        """A unary call of the gateway's own (health probes, releases): :class:`DriverCalls`."""
        try:
            result = await asyncio.wait_for(self.call(address, SERVICE_PATH + method, metadata, request), timeout)
        except TimeoutError:
            raise DriverCallFailed("no answer in time") from None
        except Unavailable as exc:
            raise DriverCallFailed(f"UNAVAILABLE: {exc.message}") from None
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise
            # The connection it waited for was given up (the pool closed): not this task's end.
            raise DriverCallFailed("the gateway closed its connections to the driver") from None
        if result.status != 0:
            raise DriverCallFailed(f"{STATUS_NAMES.get(result.status, result.status)}: {result.details}")
        return result.message

    async def forget(self, address: str) -> None:
        """The driver at ``address`` is gone: no new calls go on its connections (those in flight
        end as the driver ends them), and a connection being opened to it is given up."""
        connecting = self._connecting.pop(address, None)
        if connecting is not None:
            connecting.cancel()
        for conn in self._conns.pop(address, []):
            conn.drain()

    async def call(self, address: str, method_path: str, metadata: tuple[Header, ...], message: bytes) -> UnaryResult:
        """A unary call made by the gateway itself, with the driver's raw answer (for relaying it)."""
        conn = await self.get(address)
        call = _UnaryCall()
        stream = conn.open_stream(request_block(method_path, address, metadata), call)
        call.stream = stream
        stream.send_data(b"\x00" + len(message).to_bytes(4, "big") + message, True)
        try:
            return await call.future
        except asyncio.CancelledError:
            stream.reset(ErrorCode.CANCEL)
            raise

    def connections(self) -> list[DriverConnection]:
        return [c for conns in self._conns.values() for c in conns]

    async def close(self) -> None:
        self._closed = True
        for fut in list(self._connecting.values()):
            fut.cancel()
        conns = self.connections()
        self._conns.clear()
        for conn in conns:
            conn.abort()
        for conn in conns:
            await conn.closed.wait()
