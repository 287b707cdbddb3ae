"""RFC 9113 conformance of the client leg, h2spec-style: malformed requests and frames get the
error the RFC names, and nothing malformed reaches a driver."""

from __future__ import annotations

import uuid

import pytest

from sparkgate.connect import wire
from sparkgate.gateway.h2 import frames as f
from sparkgate.gateway.h2.downstream import grpc_timeout
from sparkgate.gateway.h2.frames import ErrorCode
from sparkgate.gateway.h2.hpack import Decoder, encode_headers
from sparkgate.gateway.server import Gateway
from sparkgate.testing.fake_backend import FakeSparkConnectServer
from tests.gateway.h2.test_connection import ROUTE, SVC, RawClient

GOOD = [
    (":method", "POST"),
    (":scheme", "http"),
    (":path", SVC + "Config"),
    (":authority", "gw"),
    ("content-type", "application/grpc"),
    ("te", "trailers"),
    *ROUTE,
]


def _with(*changes: tuple[int, tuple[str, str] | None]) -> list[tuple[str, str]]:
    """GOOD with field ``i`` replaced (or dropped, for None); an index past the end appends."""
    fields: list[tuple[str, str] | None] = list(GOOD)
    for i, field in changes:
        if i >= len(fields):
            fields.append(field)
        else:
            fields[i] = field
    return [x for x in fields if x is not None]


MALFORMED = {
    "no :method": _with((0, None)),
    "no :scheme": _with((1, None)),
    "no :path": _with((2, None)),
    "empty :path": _with((2, (":path", ""))),
    "duplicate :path": _with((99, (":path", SVC + "Config"))),
    "unknown pseudo-header": _with((99, (":protocol", "x"))),
    "response pseudo-header": _with((99, (":status", "200"))),
    "pseudo-header after a regular field": [*GOOD[1:], GOOD[0]],
    "connection header": _with((99, ("connection", "keep-alive"))),
    "transfer-encoding": _with((99, ("transfer-encoding", "chunked"))),
    "te other than trailers": _with((5, ("te", "gzip"))),
    "upper-case name": _with((99, ("X-Doordash-User", "eve"))),
    "CR LF in a value": _with((99, ("x-doordash-user", "eve\r\nx-evil: 1"))),
    "NUL in a value": _with((99, ("x-doordash-user", "eve\0"))),
    "Latin-1 name": _with((99, ("x-us\u00e9r", "eve"))),
    "content-length not a number": _with((99, ("content-length", "ten"))),
    "content-length negative": _with((99, ("content-length", "-1"))),
    "content-length of non-ASCII digits": _with((99, ("content-length", "\u00b2"))),
}


@pytest.mark.parametrize("fields", list(MALFORMED.values()), ids=list(MALFORMED))
async def test_a_malformed_request_is_reset_and_never_relayed(
    backend_and_gateway: tuple[FakeSparkConnectServer, Gateway], fields: list[tuple[str, str]]
) -> None:
    fake, gateway = backend_and_gateway
    c = await RawClient.connect(gateway.port)
    c.writer.write(f.frame(f.HEADERS, f.END_HEADERS | f.END_STREAM, 1, encode_headers(fields)))
    _, sid, payload = await c.until(f.RST_STREAM)
    assert sid == 1 and int.from_bytes(payload, "big") == ErrorCode.PROTOCOL_ERROR
    # The connection goes on: a good request on it is answered.
    c.writer.write(
        f.frame(f.HEADERS, f.END_HEADERS | f.END_STREAM, 3, encode_headers(_with((2, (":path", SVC + "Nope")))))
    )
    flags, sid, block = await c.until(f.HEADERS)
    assert sid == 3 and flags & f.END_STREAM and b"grpc-status" in block
    c.close()
    assert fake.calls_of("Config") == []


async def test_a_name_of_utf8_bytes_is_reset_too(gateway: Gateway) -> None:
    name = "x-us\u0119r".encode()  # decodes to a character above U+00FF
    block = encode_headers(GOOD) + b"\x00" + bytes([len(name)]) + name + b"\x03eve"
    c = await RawClient.connect(gateway.port)
    c.writer.write(f.frame(f.HEADERS, f.END_HEADERS | f.END_STREAM, 1, block))
    _, sid, payload = await c.until(f.RST_STREAM)
    assert sid == 1 and int.from_bytes(payload, "big") == ErrorCode.PROTOCOL_ERROR
    c.close()


async def test_white_space_around_a_value_is_answered_with_its_field_named(gateway: Gateway) -> None:
    c = await RawClient.connect(gateway.port)
    fields = _with((99, ("x-doordash-user", "eve ")))
    c.writer.write(f.frame(f.HEADERS, f.END_HEADERS | f.END_STREAM, 1, encode_headers(fields)))
    flags, sid, block = await c.until(f.HEADERS)
    trailers = dict(Decoder().decode(block))
    assert sid == 1 and flags & f.END_STREAM and trailers["grpc-status"] == "3", trailers  # INVALID_ARGUMENT
    assert "x-doordash-user" in trailers["grpc-message"]
    c.close()


def test_a_grpc_timeout_that_is_not_one_is_ignored() -> None:
    assert grpc_timeout((("grpc-timeout", "250m"),)) == 0.25
    assert grpc_timeout((("grpc-timeout", "2S"),)) == 2.0
    for bad in ("\u00b2S", "1x", "123456789S", "S", ""):
        assert grpc_timeout((("grpc-timeout", bad),)) is None, bad


async def test_a_get_request_is_told_grpc_calls_are_posts(gateway: Gateway) -> None:
    c = await RawClient.connect(gateway.port)
    c.writer.write(f.frame(f.HEADERS, f.END_HEADERS | f.END_STREAM, 1, encode_headers(_with((0, (":method", "GET"))))))
    flags, sid, block = await c.until(f.HEADERS)
    assert sid == 1 and flags & f.END_STREAM and b"gRPC calls are POST" in block.replace(b"%20", b" ")
    c.close()


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        (f.frame(f.HEADERS, f.END_HEADERS, 1, b"\xff\xff\xff\xff\xff\xff"), ErrorCode.COMPRESSION_ERROR),
        (f.frame(f.PING, 0, 0, b"short"), ErrorCode.FRAME_SIZE_ERROR),
        (f.frame(f.WINDOW_UPDATE, 0, 0, b"\x00\x00\x00\x00"), ErrorCode.PROTOCOL_ERROR),
        (f.frame(f.CONTINUATION, f.END_HEADERS, 1, b""), ErrorCode.PROTOCOL_ERROR),
        (f.frame(f.DATA, 0, 9, b"x"), ErrorCode.PROTOCOL_ERROR),
        (f.frame(f.SETTINGS, 0, 0, f.settings_frame([(f.SETTINGS_MAX_FRAME_SIZE, 10)])[9:]), ErrorCode.PROTOCOL_ERROR),
        (f.rst_stream_frame(7, ErrorCode.CANCEL), ErrorCode.PROTOCOL_ERROR),  # §6.4: on an idle stream
        (f.frame(f.PRIORITY, 0, 0, b"\x00\x00\x00\x01\x10"), ErrorCode.PROTOCOL_ERROR),  # §6.3: stream 0
        (f.frame(f.PRIORITY, 0, 1, b"\x00\x00\x01"), ErrorCode.FRAME_SIZE_ERROR),  # §6.3: 5 bytes
        (f.frame(f.PUSH_PROMISE, f.END_HEADERS, 1, b"\x00\x00\x00\x02"), ErrorCode.PROTOCOL_ERROR),  # §8.4
        (f.settings_frame([(f.SETTINGS_INITIAL_WINDOW_SIZE, 65_535)] * 33), ErrorCode.ENHANCE_YOUR_CALM),
    ],
    ids=[
        "bad-hpack",
        "short-ping",
        "window-update-0",
        "continuation-without-headers",
        "data-on-idle-stream",
        "max-frame-size-too-small",
        "rst-on-idle-stream",
        "priority-on-stream-0",
        "priority-wrong-length",
        "push-from-client",
        "settings-33-entries",
    ],
)
async def test_frame_errors_get_the_code_the_rfc_names(gateway: Gateway, frame: bytes, code: ErrorCode) -> None:
    c = await RawClient.connect(gateway.port)
    c.writer.write(frame)
    _, _, payload = await c.until(f.GOAWAY)
    assert f.parse_goaway(payload)[1] == code
    c.close()


@pytest.mark.parametrize(("reuse", "code"), [(1, ErrorCode.STREAM_CLOSED), (3, ErrorCode.PROTOCOL_ERROR)])
async def test_a_lower_stream_id_is_closed_or_never_opened(gateway: Gateway, reuse: int, code: ErrorCode) -> None:
    """§5.1: HEADERS on a stream that was closed: STREAM_CLOSED; §5.1.1: on a lower id never
    opened (the client skipped it, so it is idle for ever): PROTOCOL_ERROR."""
    nope = encode_headers(_with((2, (":path", SVC + "Nope"))))
    c = await RawClient.connect(gateway.port)
    for sid in (1, 5):  # 3 skipped
        c.writer.write(f.frame(f.HEADERS, f.END_HEADERS | f.END_STREAM, sid, nope))
        await c.until(f.HEADERS)  # answered (unknown method) and closed
    c.writer.write(f.frame(f.HEADERS, f.END_HEADERS | f.END_STREAM, reuse, nope))
    _, _, payload = await c.until(f.GOAWAY)
    assert f.parse_goaway(payload)[1] == code
    c.close()


def _config_message() -> bytes:
    msg = wire.encode_string(1, str(uuid.uuid4())) + wire.encode_string(2, wire.encode_string(1, "bob"))
    return b"\x00" + len(msg).to_bytes(4, "big") + msg


@pytest.mark.parametrize("difference", [-1, 1, None], ids=["less", "more", "no-data"])
async def test_data_that_does_not_add_up_to_content_length_is_malformed(
    backend_and_gateway: tuple[FakeSparkConnectServer, Gateway], difference: int | None
) -> None:
    fake, gateway = backend_and_gateway
    message = _config_message()
    claimed = len(message) + (difference or 0)
    block = encode_headers(_with((99, ("content-length", str(claimed)))))
    c = await RawClient.connect(gateway.port)
    if difference is None:
        c.writer.write(f.frame(f.HEADERS, f.END_HEADERS | f.END_STREAM, 1, block))
    else:
        c.writer.write(f.frame(f.HEADERS, f.END_HEADERS, 1, block) + f.frame(f.DATA, f.END_STREAM, 1, message))
    _, sid, payload = await c.until(f.RST_STREAM)
    assert sid == 1 and int.from_bytes(payload, "big") == ErrorCode.PROTOCOL_ERROR
    c.close()
    assert fake.calls_of("Config") == []


async def test_a_request_whose_content_length_is_right_is_relayed(gateway: Gateway) -> None:
    message = _config_message()
    block = encode_headers(_with((99, ("content-length", str(len(message))))))
    c = await RawClient.connect(gateway.port)
    c.writer.write(f.frame(f.HEADERS, f.END_HEADERS, 1, block) + f.frame(f.DATA, f.END_STREAM, 1, message))
    while True:
        flags, _, block = await c.until(f.HEADERS)
        if flags & f.END_STREAM:
            break
    assert dict(Decoder().decode(block))["grpc-status"] == "0"
    c.close()
