"""The h2 engine at the frame level: raw sockets speaking (and misspeaking) HTTP/2 to it."""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import sys
import uuid
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, cast

import grpc
import grpc.aio
import pytest

from sparkgate.clusters.manager import ClusterManager
from sparkgate.clusters.static import StaticProvider
from sparkgate.config import load_settings
from sparkgate.connect import wire
from sparkgate.gateway.h2 import buffers
from sparkgate.gateway.h2 import frames as f
from sparkgate.gateway.h2.connection import RECV_LOWAT, STREAM_WINDOW, Connection, Stream, _lowat_socket
from sparkgate.gateway.h2.frames import ErrorCode
from sparkgate.gateway.h2.hpack import REQUEST_PREFIX, encode_headers
from sparkgate.gateway.server import Gateway
from sparkgate.testing.fake_backend import FakeSparkConnectServer
from tests.gateway.h2.test_budget import Peer

SVC = "/spark.connect.SparkConnectService/"
ROUTE = (("x-doordash-team", "fe"), ("x-doordash-environment", "prod"))


class RawClient:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def connect(cls, port: int) -> RawClient:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(f.PREFACE + f.settings_frame([]))
        return cls(reader, writer)

    async def read_frame(self) -> tuple[int, int, int, bytes]:
        head = await asyncio.wait_for(self.reader.readexactly(9), 5)
        length, type_, flags, sid = f.parse_frame_header(head)
        return type_, flags, sid, await self.reader.readexactly(length)

    async def until(self, type_: int) -> tuple[int, int, bytes]:
        while True:
            t, flags, sid, payload = await self.read_frame()
            if t == type_:
                return flags, sid, payload

    def close(self) -> None:
        self.writer.close()


def request_headers(path: str = SVC + "Config") -> bytes:
    md = [(":path", path), (":authority", "gw"), ("content-type", "application/grpc"), ("te", "trailers"), *ROUTE]
    return REQUEST_PREFIX + encode_headers(md)


async def test_ping_is_answered(gateway: Gateway) -> None:
    c = await RawClient.connect(gateway.port)
    c.writer.write(f.frame(f.PING, 0, 0, b"12345678"))
    assert await c.until(f.PING) == (f.ACK, 0, b"12345678")
    c.close()


async def test_protocol_error_ends_only_that_connection(gateway: Gateway) -> None:
    bad = await RawClient.connect(gateway.port)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{gateway.port}") as ch:
        ok = wire.encode_string(1, str(uuid.uuid4()))
        assert await ch.unary_unary(SVC + "Config")(ok, metadata=ROUTE)
        bad.writer.write(f.frame(f.HEADERS, f.END_HEADERS, 2, request_headers()))  # even id: clients use odd
        _, _, payload = await bad.until(f.GOAWAY)
        assert f.parse_goaway(payload)[1] == ErrorCode.PROTOCOL_ERROR
        assert await bad.reader.read() == b""  # closed
        assert await ch.unary_unary(SVC + "Config")(ok, metadata=ROUTE)


async def test_not_http2_is_closed(gateway: Gateway) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
    writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    data = await asyncio.wait_for(reader.read(), 5)  # returns once the gateway closed the connection
    assert f.parse_frame_header(data)[1] == f.SETTINGS and len(data) < 64
    writer.close()


async def test_unknown_method_is_answered_before_any_data(gateway: Gateway) -> None:
    c = await RawClient.connect(gateway.port)
    c.writer.write(f.frame(f.HEADERS, f.END_HEADERS, 1, request_headers(SVC + "Nope")))
    flags, sid, block = await c.until(f.HEADERS)
    assert sid == 1 and flags & f.END_STREAM and b"grpc-status" in block
    _, rst_sid, payload = await c.until(f.RST_STREAM)  # the client had not finished sending: stop it
    assert rst_sid == 1 and int.from_bytes(payload, "big") == ErrorCode.NO_ERROR
    c.close()


async def test_graceful_stop_sends_goaway(gateway: Gateway) -> None:
    c = await RawClient.connect(gateway.port)
    await c.until(f.SETTINGS)
    stopping = asyncio.create_task(gateway.stop(grace=5))
    _, _, payload = await c.until(f.GOAWAY)
    assert f.parse_goaway(payload)[:2] == (0, ErrorCode.NO_ERROR)
    await stopping
    c.close()


def test_runs_on_uvloop(tmp_path: Path) -> None:
    """`sparkgate gateway` runs on uvloop (whose transports are not asyncio.Transport subclasses)."""
    uvloop = pytest.importorskip("uvloop")

    async def scenario() -> None:
        async with FakeSparkConnectServer(chunks=3, chunk_bytes=1 << 20) as fake:
            gw = {"host": "127.0.0.1", "port": 0, "affinity": {"backend": "memory"}}
            settings = load_settings(None, {}, gateway=gw, state_dir=tmp_path)
            cm = ClusterManager(StaticProvider([fake.address]), pool_size=0)
            await cm.start()
            async with Gateway(settings, cm) as g, grpc.aio.insecure_channel(f"127.0.0.1:{g.port}") as ch:
                sid = wire.encode_string(1, str(uuid.uuid4()))
                assert await ch.unary_unary(SVC + "Config")(sid, metadata=ROUTE)
                out = [m async for m in ch.unary_stream(SVC + "ExecutePlan")(sid, metadata=ROUTE)]
                assert len(out) == 4

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(scenario())


async def test_the_engine_reads_into_the_arena(gateway: Gateway) -> None:
    arena = buffers.arena()  # the gateway runs on this thread's loop
    before, made = arena.loans, arena.slabs_made
    request = wire.encode_string(1, str(uuid.uuid4()))
    async with grpc.aio.insecure_channel(f"127.0.0.1:{gateway.port}") as ch:
        for _ in range(20):
            assert await ch.unary_unary(SVC + "Config")(request, metadata=ROUTE)
    assert arena.loans - before >= 40  # each call: at least the request's read and the response's
    assert arena.slabs_made <= made + 1  # request/response traffic reads into the same slab, over and over


# -- reading a large DATA frame: SO_RCVLOWAT ---------------------------------------------------


class Collect(Stream):
    """Stream 1 of a :class:`Sink`: what arrives on it is appended to the sink's ``received``."""

    def received_data(self, payload: memoryview | bytes, end: bool) -> None:
        sink = cast(Sink, self.conn)
        sink.received += payload
        if end:
            sink.ended.set()


class Sink(Connection):
    """A connection whose stream 1 is open and collects the DATA that arrives on it."""

    def __init__(self) -> None:
        super().__init__()
        self.received = bytearray()
        self.ended = asyncio.Event()
        self.streams[1] = stream = Collect(self, 1)
        stream.recv_window = stream.window = STREAM_WINDOW  # as if it had grown (see test_budget)

    def lowat(self) -> int:
        return int(self.transport.get_extra_info("socket").getsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT))  # type: ignore[union-attr]


async def wait_for(condition: Callable[[], bool]) -> None:
    async with asyncio.timeout(5):
        while not condition():
            await asyncio.sleep(0.005)


async def connected_sink() -> tuple[Sink, asyncio.StreamReader, asyncio.StreamWriter]:
    """A :class:`Sink` reading from a real TCP socket, and the peer's end of that socket."""
    loop = asyncio.get_running_loop()
    accepted: asyncio.Future[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = loop.create_future()
    server = await asyncio.start_server(lambda r, w: accepted.set_result((r, w)), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    _, sink = await loop.create_connection(Sink, "127.0.0.1", port)
    reader, writer = await accepted
    server.close()
    return sink, reader, writer


def on_both_loops(scenario: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Run ``scenario`` on the stock event loop and on uvloop (the gateway's, when installed)."""
    factories: list[Callable[[], asyncio.AbstractEventLoop] | None] = [None]
    with contextlib.suppress(ImportError):
        import uvloop

        factories.append(uvloop.new_event_loop)
    for factory in factories:
        with asyncio.Runner(loop_factory=factory) as runner:
            runner.run(scenario())


@pytest.mark.skipif(sys.platform != "linux", reason="SO_RCVLOWAT is used on Linux only")
def test_the_rest_of_a_large_data_frame_is_read_in_large_pieces() -> None:
    async def scenario() -> None:
        sink, reader, peer = await connected_sink()
        payload = random.Random(5).randbytes(3 * RECV_LOWAT)
        peer.write(f.frame_header(len(payload), f.DATA, 0, 1) + payload[:100_000])
        await wait_for(lambda: len(sink.received) == 100_000)
        assert sink.lowat() == RECV_LOWAT  # most of the frame is still to come
        step = RECV_LOWAT // 3  # less than RECV_LOWAT at a time
        for off in range(100_000, len(payload), step):
            peer.write(payload[off : off + step])
            await peer.drain()
        await wait_for(lambda: len(sink.received) == len(payload))
        assert sink.lowat() == 1  # the frame is whole: every byte is read as it arrives again
        peer.write(f.frame(f.DATA, f.END_STREAM, 1, b"tail"))
        await wait_for(sink.ended.is_set)
        assert bytes(sink.received) == payload + b"tail"
        peer.write(f.frame(f.PING, 0, 0, b"12345678"))  # a small frame is answered at once
        head = await asyncio.wait_for(reader.readexactly(9), 5)
        assert f.parse_frame_header(head)[1:3] == (f.PING, f.ACK)
        peer.close()

    on_both_loops(scenario)


@pytest.mark.skipif(sys.platform != "linux", reason="SO_RCVLOWAT is used on Linux only")
def test_a_peer_closing_in_the_middle_of_a_large_frame_is_noticed_at_once() -> None:
    async def scenario() -> None:
        sink, _, peer = await connected_sink()
        peer.write(f.frame_header(4 * RECV_LOWAT, f.DATA, 0, 1) + bytes(100_000))
        await wait_for(lambda: len(sink.received) == 100_000)
        peer.write(bytes(50_000))
        await peer.drain()
        peer.close()  # EOF wakes the reader although fewer than RECV_LOWAT bytes arrived
        await asyncio.wait_for(sink.closed.wait(), 5)
        assert len(sink.received) == 150_000

    on_both_loops(scenario)


def test_no_lowat_under_tls_or_on_other_sockets() -> None:
    class Transport:
        def __init__(self, **extra: Any) -> None:
            self.extra = extra

        def get_extra_info(self, name: str) -> Any:
            return self.extra.get(name)

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp, socket.socket(socket.AF_UNIX) as unix:
        assert (_lowat_socket(Transport(socket=tcp)) is tcp) == (sys.platform == "linux")  # type: ignore[arg-type]
        assert _lowat_socket(Transport(socket=tcp, ssl_object=object())) is None  # type: ignore[arg-type]
        assert _lowat_socket(Transport(socket=unix)) is None  # type: ignore[arg-type]
        assert _lowat_socket(Transport()) is None  # type: ignore[arg-type]


async def test_streams_waiting_for_a_scarce_connection_window_take_turns() -> None:
    """A connection's window shared by many streams (a driver's, shared by many clients): each
    window update goes to the stream that waited longest, not to the same one every time."""
    conn = Peer()
    conn.send_window = 0
    streams = [conn.open(sid, None) for sid in (1, 3, 5)]
    for s in streams:
        s.send_window = 1 << 20
        s.send_data(b"x" * 300, False)
    conn._flush_out()
    conn.transport_.written.clear()
    for _ in range(6):
        conn.data_received(f.window_update_frame(0, 100))
    conn._flush_out()
    data, pos, order = b"".join(bytes(p) for p in conn.transport_.written), 0, []
    while pos + 9 <= len(data):
        length, type_, _, sid = f.parse_frame_header(data[pos : pos + 9])
        if type_ == f.DATA:
            order.append(sid)
        pos += 9 + length
    assert order == [1, 3, 5, 1, 3, 5]
