"""The relay against the in-package fake Spark Connect backend (real gRPC on loopback, no Spark)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

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


@pytest.fixture
async def channel(fake: FakeSparkConnectServer, tmp_path: Path) -> AsyncIterator[grpc.aio.Channel]:
    settings = load_settings(
        None, {}, gateway={"host": "127.0.0.1", "port": 0, "affinity": {"backend": "memory"}}, state_dir=tmp_path
    )
    cm = ClusterManager(StaticProvider([fake.address]), pool_size=0)
    await cm.start()
    async with (
        Gateway(settings, cm) as gw,
        grpc.aio.insecure_channel(
            f"127.0.0.1:{gw.port}",
            options=[("grpc.max_send_message_length", BIG), ("grpc.max_receive_message_length", BIG)],
        ) as ch,
    ):
        yield ch


async def test_unary_is_relayed_with_headers(channel: grpc.aio.Channel, fake: FakeSparkConnectServer) -> None:
    sid = str(uuid.uuid4())
    md = (*ROUTE, ("authorization", "Bearer secret"), ("x-custom", "1"))
    resp = await channel.unary_unary(SVC + "AnalyzePlan")(request(sid), metadata=md)
    assert wire.scan_response_string(resp, 1) == sid
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
    assert [wire.scan_response_string(m, 13) for m in out] == [f"r-{i}" for i in range(21)]
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
    assert wire.scan_response_string(resp, 2) == sid  # AddArtifactsResponse.session_id is field 2
    assert [c.session_id for c in fake.calls_of("AddArtifacts")] == [sid]


async def test_messages_over_128_mib_pass_both_legs(channel: grpc.aio.Channel) -> None:
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
