"""The fake Spark Connect backend answers like a driver, records calls and fails on demand."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import grpc
import grpc.aio
import pytest

from sparkgate.connect import wire
from sparkgate.testing.fake_backend import FakeSparkConnectServer

PATH = "/spark.connect.SparkConnectService/"


def _request(session_id: str, user_id: str = "alice", operation_id: str = "") -> bytes:
    out = wire.encode_string(1, session_id) + wire.encode_string(2, wire.encode_string(1, user_id))
    if operation_id:  # ExecutePlanRequest.operation_id = 6
        out += wire.encode_string(6, operation_id)
    return out


def _fields(buf: bytes) -> dict[int, bytes]:
    return {f: buf[s:e] for f, _, s, e in wire.iter_fields(buf)}


@pytest.fixture
async def fake() -> AsyncIterator[FakeSparkConnectServer]:
    async with FakeSparkConnectServer(chunks=3, chunk_bytes=1000) as server:
        yield server


@pytest.fixture
async def channel(fake: FakeSparkConnectServer) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(fake.address) as ch:
        yield ch


async def test_unary_answers_with_session_ids_and_records_the_call(
    fake: FakeSparkConnectServer, channel: grpc.aio.Channel
) -> None:
    sid = str(uuid.uuid4())
    response = await channel.unary_unary(PATH + "Config")(_request(sid), metadata=(("x-doordash-team", "fe"),))
    assert wire.read_string_field(response, 1) == sid
    assert wire.scan_response_ssid("Config", response) == fake.server_side_session_id
    [call] = fake.calls
    assert (call.method, call.session_id, call.user_id) == ("Config", sid, "alice")
    assert call.header("x-doordash-team") == "fe"


async def test_execute_plan_streams_arrow_batches_then_result_complete(
    fake: FakeSparkConnectServer, channel: grpc.aio.Channel
) -> None:
    sid = str(uuid.uuid4())
    call = channel.unary_stream(PATH + "ExecutePlan")(_request(sid, operation_id="op-1"))
    responses = [_fields(r) async for r in call]
    assert len(responses) == 4
    for r in responses[:3]:
        batch = _fields(r[2])
        assert len(batch[2]) == 1000
        assert (r[1], r[12], r[15]) == (sid.encode(), b"op-1", fake.server_side_session_id.encode())
    assert 14 in responses[-1] and 2 not in responses[-1]
    assert len({r[13] for r in responses}) == 4  # response ids are unique


async def test_stream_size_follows_request_headers(channel: grpc.aio.Channel) -> None:
    md = (("x-fake-chunks", "2"), ("x-fake-chunk-bytes", "5"))
    call = channel.unary_stream(PATH + "ExecutePlan")(_request(str(uuid.uuid4())), metadata=md)
    sizes = [len(r) async for r in call]
    assert len(sizes) == 3
    assert sizes[0] == sizes[1] > 5


async def test_injected_failure_keeps_details_and_trailers(
    fake: FakeSparkConnectServer, channel: grpc.aio.Channel
) -> None:
    fake.fail("AnalyzePlan", grpc.StatusCode.INTERNAL, "[BOOM] no", (("grpc-status-details-bin", b"\x01\x02"),))
    unary = channel.unary_unary(PATH + "AnalyzePlan")
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await unary(_request(str(uuid.uuid4())))
    assert info.value.code() is grpc.StatusCode.INTERNAL
    assert info.value.details() == "[BOOM] no"
    assert ("grpc-status-details-bin", b"\x01\x02") in tuple(info.value.trailing_metadata() or ())
    await unary(_request(str(uuid.uuid4())))  # only the next call fails


async def test_stream_fails_after_some_messages(fake: FakeSparkConnectServer, channel: grpc.aio.Channel) -> None:
    fake.fail("ExecutePlan", grpc.StatusCode.UNAVAILABLE, "driver lost", after=2)
    call = channel.unary_stream(PATH + "ExecutePlan")(_request(str(uuid.uuid4())))
    received = 0
    with pytest.raises(grpc.aio.AioRpcError) as info:
        async for _ in call:
            received += 1
    assert received == 2
    assert info.value.code() is grpc.StatusCode.UNAVAILABLE


async def test_clone_session_and_add_artifacts(fake: FakeSparkConnectServer, channel: grpc.aio.Channel) -> None:
    sid, new_sid = str(uuid.uuid4()), str(uuid.uuid4())
    clone = await channel.unary_unary(PATH + "CloneSession")(_request(sid) + wire.encode_string(4, new_sid))
    assert wire.read_string_field(clone, 3) == new_sid

    async def batches() -> AsyncIterator[bytes]:
        for _ in range(3):
            yield _request(sid)

    response = await channel.stream_unary(PATH + "AddArtifacts")(batches())
    assert wire.read_string_field(response, 2) == sid  # AddArtifactsResponse.session_id = 2
    assert [c.method for c in fake.calls] == ["CloneSession", "AddArtifacts"]
