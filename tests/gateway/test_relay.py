"""The relay against the in-package fake Spark Connect backend (real gRPC on loopback, no Spark)."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import pytest

from sparkgate.clusters.manager import ClusterManager
from sparkgate.clusters.static import StaticProvider
from sparkgate.config import load_settings
from sparkgate.connect import wire
from sparkgate.gateway.server import Gateway
from sparkgate.testing.fake_backend import FakeSparkConnectServer

SVC = "/spark.connect.SparkConnectService/"
ROUTE = (("x-doordash-team", "fe"), ("x-doordash-environment", "prod"))
BIG = 256 * 1024 * 1024


def request(session_id: str | None = None, user: str = "alice", extra: bytes = b"") -> bytes:
    sid = session_id or str(uuid.uuid4())
    return wire.encode_string(1, sid) + wire.encode_string(2, wire.encode_string(1, user)) + extra


@pytest.fixture
async def fake() -> AsyncIterator[FakeSparkConnectServer]:
    async with FakeSparkConnectServer(chunks=4, chunk_bytes=1024) as f:
        yield f


@contextlib.asynccontextmanager
async def start_gateway(driver: str, tmp_path: Path, **gateway: Any) -> AsyncIterator[Gateway]:
    gw_settings = {"host": "127.0.0.1", "port": 0, "affinity": {"backend": "memory"}, **gateway}
    settings = load_settings(None, {}, gateway=gw_settings, state_dir=tmp_path)
    cm = ClusterManager(StaticProvider([driver]), pool_size=0)
    await cm.start()
    async with Gateway(settings, cm) as gw:
        yield gw


def open_channel(gw: Gateway) -> grpc.aio.Channel:
    options = [("grpc.max_send_message_length", BIG), ("grpc.max_receive_message_length", BIG)]
    return grpc.aio.insecure_channel(f"127.0.0.1:{gw.port}", options=options)


@pytest.fixture
async def gateway(fake: FakeSparkConnectServer, tmp_path: Path) -> AsyncIterator[Gateway]:
    async with start_gateway(fake.address, tmp_path) as gw:
        yield gw


@pytest.fixture
async def channel(gateway: Gateway) -> AsyncIterator[grpc.aio.Channel]:
    async with open_channel(gateway) as ch:
        yield ch


async def test_unary_is_relayed_with_headers(channel: grpc.aio.Channel, fake: FakeSparkConnectServer) -> None:
    sid = str(uuid.uuid4())
    md = (*ROUTE, ("authorization", "Bearer secret"), ("x-custom", "1"))
    resp = await channel.unary_unary(SVC + "AnalyzePlan")(request(sid), metadata=md)
    assert wire.read_string_field(resp, 1) == sid
    (call,) = fake.calls_of("AnalyzePlan")
    assert call.session_id == sid and call.user_id == "alice"
    assert call.header("x-custom") == "1" and call.header("x-doordash-team") == "fe"
    assert call.header("authorization") is None  # the client's credentials stop at the gateway


async def test_error_status_and_trailers_pass_exactly(channel: grpc.aio.Channel, fake: FakeSparkConnectServer) -> None:
    details = b"\x08\x0d\x12\x04boom"  # any bytes: relayed untouched
    fake.fail("AnalyzePlan", grpc.StatusCode.INTERNAL, "[DIVIDE_BY_ZERO] boom", (("grpc-status-details-bin", details),))
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await channel.unary_unary(SVC + "AnalyzePlan")(request(), metadata=ROUTE)
    assert e.value.code() is grpc.StatusCode.INTERNAL
    assert e.value.details() == "[DIVIDE_BY_ZERO] boom"
    assert dict(e.value.trailing_metadata() or ())["grpc-status-details-bin"] == details


async def test_stream_is_relayed_in_order(channel: grpc.aio.Channel) -> None:
    md = (*ROUTE, ("x-fake-chunks", "20"), ("x-fake-chunk-bytes", str(1 << 20)))
    out = [m async for m in channel.unary_stream(SVC + "ExecutePlan")(request(), metadata=md)]
    assert len(out) == 21
    assert [wire.read_string_field(m, 13) for m in out] == [f"r-{i}" for i in range(21)]
    assert all(len(m) > (1 << 20) for m in out[:-1])


async def test_stream_error_midway_passes_through(channel: grpc.aio.Channel, fake: FakeSparkConnectServer) -> None:
    fake.fail("ExecutePlan", grpc.StatusCode.UNAVAILABLE, "driver went away", after=2)
    got = []
    with pytest.raises(grpc.aio.AioRpcError) as e:
        async for m in channel.unary_stream(SVC + "ExecutePlan")(request(), metadata=ROUTE):
            got.append(m)
    assert len(got) == 2 and e.value.code() is grpc.StatusCode.UNAVAILABLE
    assert e.value.details() == "driver went away"


async def test_client_stream_goes_whole_to_one_driver(channel: grpc.aio.Channel, fake: FakeSparkConnectServer) -> None:
    sid = str(uuid.uuid4())

    async def chunks() -> AsyncIterator[bytes]:
        for i in range(5):
            yield request(sid, extra=wire.encode_string(5, b"x" * (32 * 1024 + i)))

    resp = await channel.stream_unary(SVC + "AddArtifacts")(chunks(), metadata=ROUTE)
    assert wire.read_string_field(resp, 2) == sid  # AddArtifactsResponse.session_id is field 2
    assert [c.session_id for c in fake.calls_of("AddArtifacts")] == [sid]


async def test_messages_over_128_mib_pass_both_legs(fake: FakeSparkConnectServer, tmp_path: Path) -> None:
    # Past the 128 MiB (Spark Connect clients' largest message) a connection may hold while routing.
    held = {"max_held_bytes_per_connection": 256 * 1024 * 1024}
    async with start_gateway(fake.address, tmp_path, http2=held) as gw, open_channel(gw) as channel:
        payload = wire.encode_string(4, b"n" * (150 * 1024 * 1024))
        resp = await channel.unary_unary(SVC + "ArtifactStatus")(request(extra=payload), metadata=ROUTE)
        assert resp


async def test_garbage_gets_invalid_argument_and_others_are_served(channel: grpc.aio.Channel) -> None:
    for bad in (b"\xff\xff\xff", b"\x0a\x05abc"):
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await channel.unary_unary(SVC + "Config")(bad, metadata=ROUTE)
        assert e.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert "protobuf" in (e.value.details() or "")
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await channel.unary_stream(SVC + "ExecutePlan")(b"\xff", metadata=ROUTE).read()
    assert e.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert await channel.unary_unary(SVC + "Config")(request(), metadata=ROUTE)


async def test_unknown_method_is_unimplemented(channel: grpc.aio.Channel) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await channel.unary_unary(SVC + "NoSuchRpc")(request(), metadata=ROUTE)
    assert e.value.code() is grpc.StatusCode.UNIMPLEMENTED


async def test_missing_routing_is_invalid_argument(channel: grpc.aio.Channel) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await channel.unary_unary(SVC + "AnalyzePlan")(request(), metadata=(("x-doordash-team", "fe"),))
    assert e.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "x-doordash-environment" in (e.value.details() or "")


async def test_release_session_forwards_then_drops_route(
    channel: grpc.aio.Channel, fake: FakeSparkConnectServer
) -> None:
    sid = str(uuid.uuid4())
    await channel.unary_unary(SVC + "Config")(request(sid), metadata=ROUTE)
    await channel.unary_unary(SVC + "ReleaseSession")(request(sid))
    assert [c.method for c in fake.calls if c.session_id == sid] == ["Config", "ReleaseSession"]
    # The session is gone: a new call without routing info is not routable any more.
    with pytest.raises(grpc.aio.AioRpcError):
        await channel.unary_unary(SVC + "AnalyzePlan")(request(sid))


async def test_clone_session_routes_the_clone_to_the_same_driver(
    channel: grpc.aio.Channel, fake: FakeSparkConnectServer
) -> None:
    sid, chosen = str(uuid.uuid4()), str(uuid.uuid4())
    await channel.unary_unary(SVC + "Config")(request(sid), metadata=ROUTE)
    # The client names the clone (CloneSessionRequest.new_session_id = 4) ...
    await channel.unary_unary(SVC + "CloneSession")(request(sid, extra=wire.encode_string(4, chosen)))
    # ... or the driver does (CloneSessionResponse.new_session_id = 3).
    resp = await channel.unary_unary(SVC + "CloneSession")(request(sid))
    generated = wire.read_string_field(resp, 3)
    for clone in (chosen, generated):  # no routing headers: only a route to the clone makes this work
        await channel.unary_unary(SVC + "AnalyzePlan")(request(clone))
    assert [c.session_id for c in fake.calls_of("AnalyzePlan")] == [chosen, generated]


async def test_failed_clone_adds_no_route(channel: grpc.aio.Channel, fake: FakeSparkConnectServer) -> None:
    sid, clone = str(uuid.uuid4()), str(uuid.uuid4())
    await channel.unary_unary(SVC + "Config")(request(sid), metadata=ROUTE)
    fake.fail("CloneSession", grpc.StatusCode.INTERNAL, "[INVALID_HANDLE.SESSION_NOT_FOUND] nope")
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await channel.unary_unary(SVC + "CloneSession")(request(sid, extra=wire.encode_string(4, clone)))
    assert e.value.code() is grpc.StatusCode.INTERNAL
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await channel.unary_unary(SVC + "AnalyzePlan")(request(clone))
    assert e.value.code() is grpc.StatusCode.INVALID_ARGUMENT  # not routable: no route, no headers


async def test_held_options_reach_the_driver_before_the_first_forwarded_call(
    channel: grpc.aio.Channel, fake: FakeSparkConnectServer
) -> None:
    """JVM style: team and environment in two Config(Set) calls; the first is held, then replayed."""
    sid = str(uuid.uuid4())

    def config_set(key: str, value: str) -> bytes:
        kv = wire.encode_string(1, key) + wire.encode_string(2, value)
        return request(sid, extra=wire.encode_string(3, wire.encode_string(1, wire.encode_string(1, kv))))

    prefix = "spark.connect.grpc.header."
    await channel.unary_unary(SVC + "Config")(config_set(prefix + "x-doordash-team", "fe"))
    assert fake.calls == []  # routing-only: answered by the gateway
    await channel.unary_unary(SVC + "Config")(config_set(prefix + "x-doordash-environment", "prod"))
    first, second = fake.calls
    assert (first.method, second.method) == ("Config", "Config")
    assert wire.config_set_pairs(first.request) == [(prefix + "x-doordash-team", "fe")]  # the preamble
    assert wire.config_set_pairs(second.request) == [(prefix + "x-doordash-environment", "prod")]


async def test_client_cancel_cancels_the_driver_stream(channel: grpc.aio.Channel, fake: FakeSparkConnectServer) -> None:
    md = (*ROUTE, ("x-fake-chunks", "1000"), ("x-fake-chunk-bytes", str(1 << 20)), ("x-fake-delay-ms", "5"))
    call = channel.unary_stream(SVC + "ExecutePlan")(request(), metadata=md)
    assert await call.read()
    call.cancel()
    assert await fake.wait_cancelled(2) == ["ExecutePlan"]


async def test_first_message_over_the_limit_is_resource_exhausted(fake: FakeSparkConnectServer, tmp_path: Path) -> None:
    async with start_gateway(fake.address, tmp_path, max_message_bytes=1 << 20) as gw, open_channel(gw) as ch:
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await ch.unary_unary(SVC + "ArtifactStatus")(request(extra=b"\x22" + b"x" * (2 << 20)), metadata=ROUTE)
        assert e.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        assert await ch.unary_unary(SVC + "Config")(request(), metadata=ROUTE)
    assert fake.calls_of("ArtifactStatus") == []


async def test_compressed_first_message(channel: grpc.aio.Channel) -> None:
    big = request(extra=wire.encode_string(9, b"a" * 100_000))  # grpc only compresses when it pays
    call = channel.unary_unary(SVC + "Config")(big, metadata=ROUTE, compression=grpc.Compression.Gzip)
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await call
    assert e.value.code() is grpc.StatusCode.UNIMPLEMENTED
    assert "compress" in (e.value.details() or "")


async def read_rest(call: Any) -> list[bytes]:
    """The remaining messages of a stream already read with ``read()`` (the two APIs do not mix)."""
    out = []
    while (msg := await call.read()) is not grpc.aio.EOF:
        out.append(msg)
    return out


class _Pipe:
    """A TCP proxy between gateway and driver that a test can cut, like a lost network."""

    def __init__(self, target: str) -> None:
        self.target = target
        self.writers: list[asyncio.StreamWriter] = []
        self.server: asyncio.Server | None = None

    @property
    def address(self) -> str:
        assert self.server is not None
        return f"127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def __aenter__(self) -> _Pipe:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.cut()
        assert self.server is not None
        self.server.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        host, port = self.target.rsplit(":", 1)
        up_reader, up_writer = await asyncio.open_connection(host, int(port))
        self.writers += [writer, up_writer]

        async def copy(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError):
                while data := await src.read(1 << 16):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(copy(reader, up_writer), copy(up_reader, writer))

    def cut(self) -> None:
        for w in self.writers:
            w.transport.abort()
        self.writers.clear()


async def test_driver_connection_lost_midstream_is_unavailable(fake: FakeSparkConnectServer, tmp_path: Path) -> None:
    md = (*ROUTE, ("x-fake-chunks", "100"), ("x-fake-delay-ms", "20"))
    async with _Pipe(fake.address) as pipe, start_gateway(pipe.address, tmp_path) as gw, open_channel(gw) as ch:
        call = ch.unary_stream(SVC + "ExecutePlan")(request(), metadata=md)
        assert await call.read()
        pipe.cut()
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await read_rest(call)
        assert e.value.code() is grpc.StatusCode.UNAVAILABLE
        # The next call opens a new connection to the driver.
        assert await ch.unary_unary(SVC + "Config")(request(), metadata=ROUTE)


async def test_driver_goaway_lets_streams_finish_and_new_calls_reconnect(
    fake: FakeSparkConnectServer, tmp_path: Path
) -> None:
    md = (*ROUTE, ("x-fake-chunks", "10"), ("x-fake-delay-ms", "30"))
    async with start_gateway(fake.address, tmp_path) as gw, open_channel(gw) as ch:
        assert await ch.unary_unary(SVC + "Config")(request(), metadata=ROUTE)
        call = ch.unary_stream(SVC + "ExecutePlan")(request(), metadata=md)
        assert await call.read()
        stopping = asyncio.create_task(fake.stop(grace=10))  # GOAWAY; the stream in flight may finish
        await asyncio.sleep(0.1)
        async with FakeSparkConnectServer(port=fake.port, chunks=4, chunk_bytes=1024) as second:
            assert await ch.unary_unary(SVC + "Config")(request(), metadata=ROUTE)
            assert len(second.calls_of("Config")) == 1
        rest = await read_rest(call)
        assert len(rest) == 10  # 11 messages in all
        await stopping


async def test_graceful_stop_finishes_streams_in_flight(fake: FakeSparkConnectServer, tmp_path: Path) -> None:
    md = (*ROUTE, ("x-fake-chunks", "10"), ("x-fake-delay-ms", "30"))
    async with start_gateway(fake.address, tmp_path) as gw, open_channel(gw) as ch:
        call = ch.unary_stream(SVC + "ExecutePlan")(request(), metadata=md)
        assert await call.read()
        t0 = time.monotonic()
        stopping = asyncio.create_task(gw.stop(grace=10))
        rest = await read_rest(call)
        assert len(rest) == 10
        await stopping
        assert time.monotonic() - t0 < 5  # it stopped once the stream was done, not after the grace


async def test_graceful_stop_cuts_streams_after_the_grace(fake: FakeSparkConnectServer, tmp_path: Path) -> None:
    md = (*ROUTE, ("x-fake-chunks", "1000"), ("x-fake-delay-ms", "20"))
    async with start_gateway(fake.address, tmp_path) as gw, open_channel(gw) as ch:
        call = ch.unary_stream(SVC + "ExecutePlan")(request(), metadata=md)
        assert await call.read()
        t0 = time.monotonic()
        await gw.stop(grace=0.3)
        assert time.monotonic() - t0 < 3
        with pytest.raises(grpc.aio.AioRpcError):
            await read_rest(call)
