"""Abusive clients against the h2 engine: each limit of ``gateway.http2`` trips, and a legitimate
client calling beside the attack sees no error.

Every attack is bounded (a few thousand frames, seconds at most) and on loopback, against the real
gateway in front of the fake Spark Connect backend.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc.aio
import pytest

from sparkgate.config import Http2Limits
from sparkgate.connect import wire
from sparkgate.gateway.h2 import frames as f
from sparkgate.gateway.h2.budget import SharedBudgets
from sparkgate.gateway.h2.downstream import ClientConnection
from sparkgate.gateway.h2.frames import ErrorCode
from sparkgate.gateway.h2.hpack import REQUEST_PREFIX, Decoder, encode_headers
from sparkgate.gateway.server import Gateway
from sparkgate.testing.fake_backend import FakeSparkConnectServer
from sparkgate.testing.h2_doubles import MemoryTransport, StubRouter
from tests.gateway.h2.conftest import gateway_to, serve
from tests.gateway.h2.test_connection import ROUTE, SVC, RawClient, request_headers


class Bystander:
    """A legitimate client calling Config over and over while an attack runs: it must see no error,
    be served at once after it, and the gateway's RSS (this process's) may rise by 200 MiB at most."""

    def __init__(self, port: int) -> None:
        self.channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
        self.session_id = str(uuid.uuid4())
        self.request = wire.encode_string(1, self.session_id) + wire.encode_string(2, wire.encode_string(1, "bob"))
        self.calls = 0
        self.errors: list[str] = []
        self.before = self.peak = 0
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Bystander:
        await self.call()  # placed on its driver before the attack starts
        self.before = self.peak = rss_bytes()
        self._task = asyncio.create_task(self._run())
        return self

    async def call(self) -> None:
        try:
            await self.channel.unary_unary(SVC + "Config")(self.request, metadata=ROUTE, timeout=5)
            self.calls += 1
        except grpc.aio.AioRpcError as exc:
            self.errors.append(f"{exc.code().name}: {exc.details()}")

    async def _run(self) -> None:
        while True:
            await self.call()
            self.peak = max(self.peak, rss_bytes())
            await asyncio.sleep(0.01)

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        await self.call()  # served at once after the attack, too
        await self.channel.close()
        assert not self.errors, self.errors[:5]
        assert self.peak - self.before < 200 * 1024 * 1024, f"RSS rose by {(self.peak - self.before) >> 20} MiB"


async def goaway(c: RawClient, timeout: float = 10) -> tuple[int, ErrorCode]:
    """The GOAWAY the gateway ends with: (last stream id, code)."""
    _, _, payload = await asyncio.wait_for(c.until(f.GOAWAY), timeout)
    last, code, _ = f.parse_goaway(payload)
    return last, ErrorCode(code)


def rss_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * 4096


def check_memory(before: int, peak: int, after: int) -> None:
    """An attack raised the gateway's RSS by at most 200 MiB, and it came back within 50 MiB."""
    mib = 1024 * 1024
    print(f"RSS before {before / mib:.0f} MiB, peak {peak / mib:.0f} MiB, after {after / mib:.0f} MiB")
    assert peak - before < 200 * mib
    assert after - before < 50 * mib


def first_message(session_id: str) -> bytes:
    msg = wire.encode_string(1, session_id) + wire.encode_string(2, wire.encode_string(1, "eve"))
    return b"\x00" + len(msg).to_bytes(4, "big") + msg


# -- streams ------------------------------------------------------------------------------------


async def test_rapid_reset_gets_enhance_your_calm_and_costs_the_driver_nothing(
    backend_and_gateway: tuple[FakeSparkConnectServer, Gateway],
) -> None:
    fake, gateway = backend_and_gateway
    async with Bystander(gateway.port) as bystander:
        c = await RawClient.connect(gateway.port)
        block = request_headers()
        burst = b"".join(
            f.frame(f.HEADERS, f.END_HEADERS, sid, block) + f.rst_stream_frame(sid, ErrorCode.CANCEL)
            for sid in range(1, 2 * 2000, 2)
        )
        c.writer.write(burst)
        _, code = await goaway(c)
        assert code == ErrorCode.ENHANCE_YOUR_CALM
        c.close()
    # The streams never carried a whole message: none was relayed.
    assert [c for c in fake.calls_of("Config") if c.session_id != bystander.session_id] == []


async def test_rapid_reset_of_relayed_calls_is_cut_off_at_the_same_budget(
    backend_and_gateway: tuple[FakeSparkConnectServer, Gateway],
) -> None:
    fake, gateway = backend_and_gateway
    limits = Http2Limits()
    async with Bystander(gateway.port) as bystander:
        c = await RawClient.connect(gateway.port)
        block, message = request_headers(), first_message(str(uuid.uuid4()))
        for start in range(1, 2 * 2000, 2 * 100):  # in writes of 100 streams
            frames = b"".join(
                f.frame(f.HEADERS, f.END_HEADERS, sid, block)
                + f.frame(f.DATA, f.END_STREAM, sid, message)
                + f.rst_stream_frame(sid, ErrorCode.CANCEL)
                for sid in range(start, start + 200, 2)
            )
            with contextlib.suppress(ConnectionError):
                c.writer.write(frames)
                await c.writer.drain()
        _, code = await goaway(c)
        assert code == ErrorCode.ENHANCE_YOUR_CALM
        c.close()
    attacker_calls = len([c for c in fake.calls_of("Config") if c.session_id != bystander.session_id])
    assert attacker_calls <= limits.premature_reset_min_streams + 200  # one write past the check


async def test_rapid_reset_diluted_with_calls_the_gateway_answers_itself_is_still_caught(tmp_path: Path) -> None:
    async with serve(tmp_path, http2={"premature_reset_min_streams": 100}) as (fake, gateway):
        c = await RawClient.connect(gateway.port)
        block, nope, message = request_headers(), request_headers(SVC + "Nope"), first_message(str(uuid.uuid4()))
        ends = f.END_HEADERS | f.END_STREAM
        # The session is placed first: from then on its calls go to the driver as they arrive.
        c.writer.write(f.frame(f.HEADERS, f.END_HEADERS, 1, block) + f.frame(f.DATA, f.END_STREAM, 1, message))
        await c.until(f.HEADERS)
        sid = 3
        with contextlib.suppress(ConnectionError):
            for _ in range(30):  # 10 relayed-and-reset calls and 20 answered ones per write
                frames = b""
                for _ in range(10):
                    frames += f.frame(f.HEADERS, f.END_HEADERS, sid, block) + f.frame(
                        f.DATA, f.END_STREAM, sid, message
                    )
                    frames += f.rst_stream_frame(sid, ErrorCode.CANCEL)
                    frames += f.frame(f.HEADERS, ends, sid + 2, nope) + f.frame(f.HEADERS, ends, sid + 4, nope)
                    sid += 6
                c.writer.write(frames)
                await c.writer.drain()
                await asyncio.sleep(0.01)  # the gateway reads as it goes
        _, code = await goaway(c)
        assert code == ErrorCode.ENHANCE_YOUR_CALM  # a third of all streams, but every relayed one, was reset
        c.close()
        assert len(fake.calls_of("Config")) < 200


async def test_streams_beyond_the_limits_are_refused_and_a_connection_is_renewed_after_its_lifetime(
    gateway: Gateway,
) -> None:
    limits = Http2Limits()
    c = await RawClient.connect(gateway.port)
    _, _, payload = await c.until(f.SETTINGS)
    advertised = dict(f.parse_settings(payload))
    assert advertised[f.SETTINGS_MAX_CONCURRENT_STREAMS] == limits.max_concurrent_streams
    assert advertised[f.SETTINGS_MAX_HEADER_LIST_SIZE] == limits.max_header_list_bytes
    # Open streams that stay open (no message yet): the 129th is refused.
    block = request_headers()
    n = limits.max_concurrent_streams + 1
    c.writer.write(b"".join(f.frame(f.HEADERS, f.END_HEADERS, 2 * i + 1, block) for i in range(n)))
    _, sid, payload = await c.until(f.RST_STREAM)
    assert sid == 2 * n - 1 and int.from_bytes(payload, "big") == ErrorCode.REFUSED_STREAM
    c.close()

    # Streams that end at once (an unknown method, answered by the gateway) up to the lifetime cap.
    c = await RawClient.connect(gateway.port)
    nope = request_headers(SVC + "Nope")
    total = limits.max_streams_per_connection
    ends = f.END_HEADERS | f.END_STREAM
    for start in range(0, total + 10, 100):
        c.writer.write(b"".join(f.frame(f.HEADERS, ends, 2 * i + 1, nope) for i in range(start, start + 100)))
        await c.writer.drain()
    last, code = await goaway(c)
    assert (last, code) == (2 * total - 1, ErrorCode.NO_ERROR)  # graceful: the client reconnects
    c.close()


# -- floods of frames -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "frame"),
    [
        ("PING", f.frame(f.PING, 0, 0, b"12345678")),
        ("SETTINGS", f.settings_frame([(f.SETTINGS_INITIAL_WINDOW_SIZE, 65_535)])),
    ],
)
async def test_a_client_that_sends_but_never_reads_is_cut_off(
    backend_and_gateway: tuple[FakeSparkConnectServer, Gateway], name: str, frame: bytes
) -> None:
    _, gateway = backend_and_gateway
    before = rss_bytes()
    async with Bystander(gateway.port):
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # and never read
        sock.connect(("127.0.0.1", gateway.port))
        sock.setblocking(False)
        loop = asyncio.get_running_loop()
        await loop.sock_sendall(sock, f.PREFACE + f.settings_frame([]))
        chunk = frame * 4096
        cut_off = False
        for _ in range(400):  # up to ~40 MB of frames, each asking for an answer
            try:
                await asyncio.wait_for(loop.sock_sendall(sock, chunk), 5)
            except ConnectionError:  # reset: the gateway closed the connection (not merely stopped reading)
                cut_off = True
                break
        sock.close()
        assert cut_off, f"a {name} flood from a client that does not read was served to the end"
    assert rss_bytes() - before < 200 * 1024 * 1024


@pytest.mark.parametrize(
    ("frames", "code"),
    [
        # Empty DATA that does not end the stream, on a stream waiting for its message.
        ([f.frame(f.DATA, 0, 1, b"")] * 3, ErrorCode.ENHANCE_YOUR_CALM),
        # Empty CONTINUATIONs of an open header block.
        ([f.frame(f.CONTINUATION, 0, 3, b"")] * 3, ErrorCode.ENHANCE_YOUR_CALM),
        # Padded DATA with nothing but padding.
        ([f.frame(f.DATA, f.PADDED, 1, b"\x02\x00\x00")] * 3, ErrorCode.ENHANCE_YOUR_CALM),
        # PRIORITY churn: more than 100 per stream opened.
        ([f.frame(f.PRIORITY, 0, 5, b"\x00\x00\x00\x00\x10")] * 300, ErrorCode.ENHANCE_YOUR_CALM),
    ],
    ids=["empty-data", "empty-continuation", "padding-only-data", "priority"],
)
async def test_floods_of_empty_and_pointless_frames_get_goaway(
    backend_and_gateway: tuple[FakeSparkConnectServer, Gateway], frames: list[bytes], code: ErrorCode
) -> None:
    _, gateway = backend_and_gateway
    async with Bystander(gateway.port):
        c = await RawClient.connect(gateway.port)
        opening = f.frame(f.HEADERS, f.END_HEADERS, 1, request_headers())
        if frames[0][3] == f.CONTINUATION:
            opening += f.frame(f.HEADERS, 0, 3, request_headers()[:5])  # a header block left open
        c.writer.write(opening + b"".join(frames))
        assert (await goaway(c))[1] == code
        c.close()


# -- sizes --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("type_", "length", "code"),
    [
        (f.HEADERS, 16 * 1024 * 1024 - 1, ErrorCode.ENHANCE_YOUR_CALM),
        (f.HEADERS, Http2Limits().max_header_list_bytes + 1, ErrorCode.ENHANCE_YOUR_CALM),
        (0xFA, 1024 * 1024, ErrorCode.FRAME_SIZE_ERROR),  # an unknown type: ignored, but not 1 MiB of it
        (f.SETTINGS, 64 * 1024, ErrorCode.FRAME_SIZE_ERROR),
    ],
    ids=["headers-16mib", "headers-over-list-limit", "unknown-1mib", "settings-64kib"],
)
async def test_a_long_frame_is_refused_before_it_is_buffered(
    backend_and_gateway: tuple[FakeSparkConnectServer, Gateway], type_: int, length: int, code: ErrorCode
) -> None:
    _, gateway = backend_and_gateway
    async with Bystander(gateway.port):
        c = await RawClient.connect(gateway.port)
        c.writer.write(f.frame_header(length, type_, f.END_HEADERS if type_ == f.HEADERS else 0, 1) + b"\x00" * 100)
        assert (await goaway(c))[1] == code  # at once: the rest of the frame never came
        c.close()


async def test_padded_data_longer_than_a_control_frame_is_data_as_usual() -> None:
    router = StubRouter()
    conn = ClientConnection(router)  # type: ignore[arg-type]
    conn.connection_made(MemoryTransport())  # type: ignore[arg-type]
    conn.data_received(f.PREFACE)
    data = b"\x00" + (20_000).to_bytes(4, "big") + b"m" * 20_000  # one 20 kB message
    padded = bytes([255]) + data + b"\x00" * 255
    conn.data_received(f.frame(f.HEADERS, f.END_HEADERS, 1, request_headers()))
    conn.data_received(f.frame(f.DATA, f.PADDED | f.END_STREAM, 1, padded))
    assert conn.transport is not None  # no FRAME_SIZE_ERROR: DATA may be as long as the frame size we allow
    assert [s.id for s in router.routed] == [1]


def test_frames_queued_for_a_client_that_does_not_read_are_bounded() -> None:
    asyncio.run(_queued_frames())


async def _queued_frames() -> None:
    conn = ClientConnection(StubRouter(), Http2Limits(max_queued_control_frames=10))  # type: ignore[arg-type]
    transport = MemoryTransport()
    conn.connection_made(transport)  # type: ignore[arg-type]
    conn.data_received(f.PREFACE)
    conn.data_received(b"".join(f.frame(f.PING, 0, 0, b"12345678") for _ in range(50)))  # read: fine
    assert conn.transport is transport
    conn.pause_writing()  # the client stopped reading: its socket buffer is full
    conn.data_received(b"".join(f.frame(f.PING, 0, 0, b"12345678") for _ in range(11)))
    assert conn.transport is None and transport.closed  # cut off, at once (it would not read a GOAWAY)


async def test_a_header_list_over_the_limit_is_refused_before_decoding() -> None:
    limits = Http2Limits(max_header_list_bytes=8192)
    conn = ClientConnection(StubRouter(), limits)  # type: ignore[arg-type]
    transport = MemoryTransport()
    conn.connection_made(transport)  # type: ignore[arg-type]
    conn.data_received(f.PREFACE)
    huge = request_headers() + b"\x00\x01x" + bytes([0xFF]) + b"\xff" * 9000  # Huffman junk
    conn.data_received(f.frame(f.HEADERS, f.END_HEADERS, 1, huge[:9000]))
    assert conn.transport is None and not conn.streams  # GOAWAY sent and closed; nothing decoded


# -- fairness -------------------------------------------------------------------------------------


async def test_a_read_full_of_frames_is_handled_over_several_loop_turns() -> None:
    conn = ClientConnection(StubRouter(), Http2Limits(frames_per_turn=100))  # type: ignore[arg-type]
    transport = MemoryTransport()
    conn.connection_made(transport)  # type: ignore[arg-type]
    conn.data_received(f.PREFACE)
    pings = [f.frame(f.PING, 0, 0, i.to_bytes(8, "big")) for i in range(250)]
    conn.data_received(b"".join(pings))
    assert not transport.reading  # the rest waits for the next turns; other connections go first
    turns = 0
    while not transport.reading:
        await asyncio.sleep(0)
        turns += 1
    await asyncio.sleep(0)  # the last turn's answers are written at its end
    acks = [p for p in transport.written if isinstance(p, bytes) and p[3:4] == bytes([f.PING])]
    assert len(acks) == 250 and [a[9:] for a in acks] == [p[9:] for p in pings]  # all, in order
    assert turns >= 2


# -- timeouts and the connection cap --------------------------------------------------------------

TIGHT = {
    "handshake_timeout_seconds": 0.3,
    "request_headers_timeout_seconds": 0.5,
    "first_message_timeout_seconds": 0.5,
    "idle_timeout_seconds": 1.5,
}


@pytest.fixture
async def tight_gateway(tmp_path: Path) -> AsyncIterator[Gateway]:
    async with serve(tmp_path, http2=TIGHT) as (_, gateway):
        yield gateway


async def test_what_waits_too_long_is_ended(tight_gateway: Gateway) -> None:
    port = tight_gateway.port
    # No preface: closed.
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    sent = await asyncio.wait_for(reader.read(), 5)  # returns at EOF: the gateway closed it
    assert f.parse_frame_header(sent)[1] == f.SETTINGS
    writer.close()
    # A header block left open: GOAWAY.
    c = await RawClient.connect(port)
    c.writer.write(f.frame(f.HEADERS, 0, 1, request_headers()[:4]))
    assert (await goaway(c))[1] == ErrorCode.ENHANCE_YOUR_CALM
    c.close()
    # A call whose first message never completes: DEADLINE_EXCEEDED, the connection stays.
    c = await RawClient.connect(port)
    c.writer.write(
        f.frame(f.HEADERS, f.END_HEADERS, 1, request_headers()) + f.frame(f.DATA, 0, 1, b"\x00\x00\x00\x00\x10")
    )
    flags, sid, block = await c.until(f.HEADERS)
    trailers = dict(Decoder().decode(block))
    assert sid == 1 and flags & f.END_STREAM and trailers["grpc-status"] == "4", trailers  # DEADLINE_EXCEEDED
    # Then, with no call left, the idle connection is closed gracefully.
    last, code = await goaway(c, timeout=5)
    assert (last, code) == (1, ErrorCode.NO_ERROR)
    c.close()


async def test_at_the_cap_an_idle_connection_makes_room_and_a_busy_one_does_not(tmp_path: Path) -> None:
    async with serve(tmp_path, http2={"max_connections": 3}) as (_, gateway):
        port = gateway.port
        request = wire.encode_string(1, str(uuid.uuid4())) + wire.encode_string(2, wire.encode_string(1, "bob"))
        # Three idle connections (as many as a client pool may leave open): the newest client is
        # served all the same, and the connection idle the longest is closed gracefully for it.
        idle = [await RawClient.connect(port) for _ in range(3)]
        for c in idle:
            await c.until(f.SETTINGS)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
            assert await ch.unary_unary(SVC + "Config")(request, metadata=ROUTE, timeout=5)
        _, code = await goaway(idle[0])
        assert code == ErrorCode.NO_ERROR
        for c in idle:
            c.close()
        await asyncio.sleep(0.1)
        # Three connections with a call in flight each: a fourth is refused, saying why.
        busy = [await RawClient.connect(port) for _ in range(3)]
        for c in busy:
            c.writer.write(_announce(1, 100))  # a first message that never completes
            await c.until(f.SETTINGS)
        await asyncio.sleep(0.1)
        extra = await RawClient.connect(port)
        _, _, payload = await extra.until(f.GOAWAY)
        _, code, debug = f.parse_goaway(payload)
        assert code == ErrorCode.ENHANCE_YOUR_CALM and b"max_connections" in debug
        extra.close()
        busy.pop().close()
        await asyncio.sleep(0.1)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:  # room again
            assert await ch.unary_unary(SVC + "Config")(request, metadata=ROUTE, timeout=5)
        for c in busy:
            c.close()


# -- memory held for first messages ----------------------------------------------------------------


def _announce(sid: int, n: int) -> bytes:
    """A call on stream ``sid`` whose first message says it is ``n`` bytes long (only its prefix sent)."""
    return f.frame(f.HEADERS, f.END_HEADERS, sid, request_headers()) + f.frame(
        f.DATA, 0, sid, b"\x00" + n.to_bytes(4, "big")
    )


async def test_first_messages_are_held_only_within_their_budgets() -> None:
    mib = 1024 * 1024
    limits = Http2Limits(max_held_bytes_per_connection=4 * mib, max_held_bytes_total=5 * mib)
    shared = SharedBudgets(limits)
    conns = []
    for _ in range(2):
        router = StubRouter()
        router.max_message_bytes = 64 * mib
        conn = ClientConnection(router, limits, None, shared)  # type: ignore[arg-type]
        transport = MemoryTransport()
        conn.connection_made(transport)  # type: ignore[arg-type]
        conn.data_received(f.PREFACE)
        conns.append((conn, transport))
    (a, a_out), (b, b_out) = conns

    def answered(out: MemoryTransport, sid: int) -> dict[str, str]:
        """The last header block written on stream ``sid``, decoded."""
        data, pos, found = b"".join(bytes(p) for p in out.written), 0, {}
        while pos + 9 <= len(data):
            length, type_, _, stream_id = f.parse_frame_header(data[pos : pos + 9])
            if type_ == f.HEADERS and stream_id == sid:
                found = dict(Decoder().decode(data[pos + 9 : pos + 9 + length]))
            pos += 9 + length
        return found

    a.data_received(_announce(1, 2 * mib))  # fits
    a.data_received(_announce(3, 3 * mib))  # the connection's 4 MiB would be passed
    await asyncio.sleep(0)
    refused = answered(a_out, 3)
    assert refused["grpc-status"] == "8" and "max_held_bytes_per_connection" in refused["grpc-message"]
    assert a.held.used == 2 * mib and shared.held.used == 2 * mib
    b.data_received(_announce(1, 2 * mib))  # fits its connection and, with a's 2 MiB, the 5 MiB in all
    b.data_received(_announce(3, 2 * mib))  # b's connection has room, the gateway has not
    await asyncio.sleep(0)
    assert "max_held_bytes_total" in answered(b_out, 3)["grpc-message"]
    # A call that ends (here: the client resets it) gives its room back.
    a.data_received(f.rst_stream_frame(1, ErrorCode.CANCEL))
    assert a.held.used == 0 and shared.held.used == 2 * mib
    b.data_received(_announce(5, 2 * mib))
    assert b.held.used == 4 * mib and shared.held.used == 4 * mib
    a.connection_lost(None)
    b.connection_lost(None)
    assert shared.held.used == 0


# -- clients that do not read what they asked for ------------------------------------------------------


@contextlib.asynccontextmanager
async def separate_backend(state_dir: Path, **gateway: Any) -> AsyncIterator[Gateway]:
    """A gateway in front of a fake backend in its own process, so this process's RSS is the gateway's."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "sparkgate.testing.fake_backend", stdout=asyncio.subprocess.PIPE
    )
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
        async with gateway_to(line.split()[1], state_dir, **gateway) as g:
            yield g
    finally:
        proc.kill()
        await proc.wait()


def _execute_plan(sid: int, session_id: str, chunks: int, chunk_bytes: int) -> bytes:
    md = [
        (":path", SVC + "ExecutePlan"),
        (":authority", "gw"),
        ("content-type", "application/grpc"),
        ("te", "trailers"),
        *ROUTE,
        ("x-fake-chunks", str(chunks)),
        ("x-fake-chunk-bytes", str(chunk_bytes)),
    ]
    return f.frame(f.HEADERS, f.END_HEADERS, sid, REQUEST_PREFIX + encode_headers(md)) + f.frame(
        f.DATA, f.END_STREAM, sid, first_message(session_id)
    )


@pytest.mark.parametrize("how", ["zero-window", "never-reads"])
async def test_a_client_that_does_not_read_its_results_holds_little_memory(tmp_path: Path, how: str) -> None:
    """60 ExecutePlan calls of 32 MiB each, whose results the client never takes: flow control,
    not the gateway's memory, holds them back."""
    mib = 1024 * 1024
    async with separate_backend(tmp_path) as gateway:
        before = rss_bytes()
        async with Bystander(gateway.port):
            if how == "zero-window":
                c = await RawClient.connect(gateway.port)
                c.writer.write(f.settings_frame([(f.SETTINGS_INITIAL_WINDOW_SIZE, 0)]))
                write = c.writer.write
            else:
                sock = socket.socket()
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # and never read
                sock.connect(("127.0.0.1", gateway.port))
                sock.sendall(f.PREFACE + f.settings_frame([]))
                write = sock.sendall
            session = str(uuid.uuid4())
            write(b"".join(_execute_plan(sid, session, 8, 4 * mib) for sid in range(1, 121, 2)))
            peak = before
            for _ in range(30):  # 3 s: what the driver could send has long arrived
                await asyncio.sleep(0.1)
                peak = max(peak, rss_bytes())
            if how == "zero-window":
                c.close()
            else:
                sock.close()
        await asyncio.sleep(1.5)  # (read buffers left over are let go once a second)
        check_memory(before, peak, rss_bytes())


async def test_a_first_message_larger_than_a_connection_may_hold_is_refused_before_it_is_sent(
    gateway: Gateway,
) -> None:
    c = await RawClient.connect(gateway.port)
    c.writer.write(_announce(1, 200 * 1024 * 1024))
    while True:
        flags, sid, block = await c.until(f.HEADERS)
        if sid == 1 and flags & f.END_STREAM:
            break
    trailers = dict(Decoder().decode(block))
    assert trailers["grpc-status"] == "8" and "max_held_bytes_per_connection" in trailers["grpc-message"]
    c.close()


async def test_a_large_first_message_sent_slowly_is_held_once_and_let_go(tmp_path: Path) -> None:
    """120 MiB announced and sent in pieces (under the 128 MiB a connection may hold), then the
    client gives up: the gateway held it once, and holds nothing after."""
    mib = 1024 * 1024
    async with separate_backend(tmp_path) as gateway:
        before = rss_bytes()
        async with Bystander(gateway.port):
            c = await RawClient.connect(gateway.port)
            c.writer.write(_announce(1, 120 * mib))
            piece = f.frame(f.DATA, 0, 1, bytes(4 * mib))
            peak = before
            for _ in range(25):  # 100 MiB, at a few MiB per loop turn
                c.writer.write(piece)
                await c.writer.drain()
                await asyncio.sleep(0.02)
                peak = max(peak, rss_bytes())
            c.writer.write(f.rst_stream_frame(1, ErrorCode.CANCEL))
            await c.writer.drain()
            c.close()
        await asyncio.sleep(1.5)  # (read buffers left over are let go once a second)
        check_memory(before, peak, rss_bytes())
