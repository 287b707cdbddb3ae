"""The client leg's reading of request headers: kept per header block only while it stays true."""

from __future__ import annotations

import asyncio

from sparkgate.connect.service import SERVICE_PATH
from sparkgate.gateway.h2 import frames as f
from sparkgate.gateway.h2.downstream import ClientConnection, ClientStream
from sparkgate.gateway.h2.hpack import REQUEST_PREFIX, encode_header, encode_int
from sparkgate.testing.h2_doubles import MemoryTransport, StubRouter

Router = StubRouter
Transport = MemoryTransport


def indexed_literal(name: str, value: str) -> bytes:
    """A literal with incremental indexing and a new name (RFC 7541 §6.2.1): it enters the table."""
    return b"\x40" + encode_int(len(name), 7) + name.encode() + encode_int(len(value), 7) + value.encode()


def headers_frame(sid: int, team_field: bytes) -> bytes:
    block = REQUEST_PREFIX + encode_header(":path", SERVICE_PATH + "Config")
    block += encode_header("content-type", "application/grpc") + team_field
    return f.frame(f.HEADERS, f.END_HEADERS, sid, block)


async def test_a_repeated_block_is_read_again_once_the_dynamic_table_changed() -> None:
    conn = ClientConnection(Router())  # type: ignore[arg-type]
    conn.connection_made(Transport())  # type: ignore[arg-type]
    newest_entry = bytes([0x80 | 62])  # "the dynamic table's newest entry", whatever it is now
    conn.data_received(f.PREFACE)
    frames = [
        headers_frame(1, indexed_literal("x-doordash-team", "alpha")),
        headers_frame(3, newest_entry),
        headers_frame(5, newest_entry),  # the same bytes: the kept reading is right
        headers_frame(7, indexed_literal("x-doordash-team", "beta")),
        headers_frame(9, newest_entry),  # the same bytes again, now meaning beta
    ]
    for frame in frames:
        conn.data_received(frame)
    streams = {sid: s for sid, s in conn.streams.items() if isinstance(s, ClientStream)}
    teams = {sid: dict(s.metadata).get("x-doordash-team") for sid, s in streams.items()}
    assert teams == {1: "alpha", 3: "alpha", 5: "alpha", 7: "beta", 9: "beta"}
    assert all(dict(s.upstream_metadata).get("content-type") is None for s in streams.values())
    assert streams[5].metadata is streams[3].metadata  # read once, kept


async def test_a_block_with_problems_is_answered_the_same_way_every_time() -> None:
    conn = ClientConnection(Router())  # type: ignore[arg-type]
    conn.connection_made(Transport())  # type: ignore[arg-type]
    conn.data_received(f.PREFACE)
    block = REQUEST_PREFIX + encode_header(":path", "/other.Service/Call")
    block += encode_header("content-type", "application/grpc")
    for sid in (1, 3):
        conn.data_received(f.frame(f.HEADERS, f.END_HEADERS, sid, block))
        stream = conn.streams.get(sid)
        assert stream is None or stream.sent_end  # answered at once: UNIMPLEMENTED
    assert conn._heads  # kept: the reading includes the answer


async def test_a_connection_lost_in_the_middle_of_a_message_lets_go_of_its_read_buffers() -> None:
    conn = ClientConnection(Router())  # type: ignore[arg-type]
    conn.connection_made(Transport())  # type: ignore[arg-type]
    conn.data_received(f.PREFACE)
    conn.data_received(headers_frame(1, encode_header("x-doordash-team", "fe")))
    stream = conn.streams[1]
    assert isinstance(stream, ClientStream)
    piece = b"\x00" + (100_000).to_bytes(4, "big") + bytes(1000)
    conn.data_received(f.frame_header(50_000, f.DATA, 0, 1) + piece)  # most of the frame still to come
    assert stream.held  # views of the buffer the bytes were read into
    conn.connection_lost(None)
    assert stream.held == [] and conn._data_stream is None


async def test_an_idle_connection_reclaimed_is_closed_at_once_and_cut_off_if_it_does_not_read() -> None:
    for buffered in (0, 4096):
        conn = ClientConnection(Router())  # type: ignore[arg-type]
        transport = Transport()
        conn.connection_made(transport)  # type: ignore[arg-type]
        conn.data_received(f.PREFACE)
        transport.buffered = buffered
        conn.reclaim()
        assert transport.closed and transport.aborted == bool(buffered)
        assert b"idle connection reclaimed" in b"".join(bytes(p) for p in transport.written)


async def test_a_connection_whose_client_is_already_gone_closes_without_an_error() -> None:
    class Gone(Transport):
        def can_write_eof(self) -> bool:
            return True

        def write_eof(self) -> None:
            raise OSError(107, "Transport endpoint is not connected")

    conn = ClientConnection(Router())  # type: ignore[arg-type]
    transport = Gone()
    conn.connection_made(transport)  # type: ignore[arg-type]
    conn.data_received(f.PREFACE)
    conn.drain()  # GOAWAY; with no call open, the connection closes on the next loop turn
    await asyncio.sleep(0)
    assert transport.aborted
