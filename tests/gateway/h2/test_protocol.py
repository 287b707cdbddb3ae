"""The HTTP/2 protocol without I/O: bytes in, frames out — no event loop, no socket."""

from __future__ import annotations

from sparkgate.gateway.h2 import frames as f
from sparkgate.gateway.h2.frames import ErrorCode
from sparkgate.gateway.h2.protocol import H2Protocol, Stream


class Sink(Stream):
    """A stream that keeps what it receives."""

    def __init__(self, conn: H2Protocol, sid: int) -> None:
        super().__init__(conn, sid)
        self.got = bytearray()
        self.ended = False

    def received_data(self, payload: memoryview | bytes, end: bool) -> None:
        self.got += payload
        self.ended = self.ended or end


class Peer(H2Protocol):
    def __init__(self) -> None:
        super().__init__()
        self.headers: list[tuple[int, bytes, bool]] = []
        self.goaway: tuple[int, int] | None = None

    def headers_received(self, sid: int, block: bytes, end: bool) -> None:
        self.headers.append((sid, block, end))

    def goaway_received(self, last_stream_id: int, code: int, debug: bytes) -> None:
        self.goaway = (last_stream_id, code)

    def sent(self) -> list[tuple[int, int, int, bytes]]:
        """The frames queued for the peer: (type, flags, stream, payload)."""
        data, pos, frames = b"".join(bytes(p) for p in self.data_to_send()), 0, []
        while pos < len(data):
            length, type_, flags, sid = f.parse_frame_header(data[pos : pos + 9])
            frames.append((type_, flags, sid, data[pos + 9 : pos + 9 + length]))
            pos += 9 + length
        return frames


def test_settings_and_pings_are_answered() -> None:
    p = Peer()
    p.receive_all(f.settings_frame([(f.SETTINGS_INITIAL_WINDOW_SIZE, 1000)]) + f.frame(f.PING, 0, 0, b"12345678"))
    assert p.sent() == [(f.SETTINGS, f.ACK, 0, b""), (f.PING, f.ACK, 0, b"12345678")]
    assert p.peer_initial_window == 1000


def test_header_blocks_and_data_reach_their_streams_in_any_split() -> None:
    body = f.frame(f.HEADERS, 0, 1, b"abc") + f.frame(f.CONTINUATION, f.END_HEADERS, 1, b"def")
    body += f.frame(f.DATA, 0, 1, b"x" * 5000) + f.frame(f.DATA, f.END_STREAM, 1, b"yz")
    for cut in (1, 9, 10, 20, 4000, len(body) - 1):
        p = Peer()
        stream = p.streams[1] = Sink(p, 1)
        p.receive_all(body[:cut])
        p.receive_all(body[cut:])
        assert p.headers == [(1, b"abcdef", False)]
        assert stream.got == b"x" * 5000 + b"yz" and stream.ended


def test_a_protocol_error_queues_goaway_and_ends_the_connection() -> None:
    p = Peer()
    p.receive_all(f.frame(f.PING, 0, 1, b"12345678"))  # PING on a stream
    ((type_, _, _, payload),) = p.sent()
    assert type_ == f.GOAWAY and f.parse_goaway(memoryview(payload))[1] == ErrorCode.PROTOCOL_ERROR
    assert not p.live
    p.receive_all(f.frame(f.PING, 0, 0, b"12345678"))  # nothing more is handled
    assert p.sent() == []


def test_frames_per_turn_leaves_the_rest_for_later() -> None:
    p = Peer()
    p.frames_per_turn = 2
    pings = b"".join(f.frame(f.PING, 0, 0, b"%08d" % i) for i in range(5))
    p.receive(pings)
    assert len(p.sent()) == 2  # the rest waits (an adapter lets other connections go first)
    p.receive_all(f.frame(f.PING, 0, 0, b"later..."))  # what comes next, after what waited
    assert [payload for *_, payload in p.sent()] == [*(b"%08d" % i for i in range(2, 5)), b"later..."]


def test_connection_window_updates_unblock_waiting_streams() -> None:
    p = Peer()
    stream = p.streams[1] = Sink(p, 1)
    p.send_window = 0
    stream.send_data(b"hello", True)
    assert p.sent() == [] and stream in p.blocked  # no connection window: DATA waits
    p.receive_all(f.window_update_frame(0, 100))
    assert p.sent() == [(f.DATA, f.END_STREAM, 1, b"hello")]
