"""The frame parser sees the same frames however the bytes are split into reads."""

from __future__ import annotations

import random
from typing import Any

from sparkgate.gateway.h2 import frames as f
from sparkgate.gateway.h2.connection import STREAM_WINDOW, Connection, Stream
from sparkgate.testing.h2_doubles import MemoryTransport


class Recording(Stream):
    __slots__ = ("events",)

    def __init__(self, conn: Connection, sid: int, events: list[tuple[Any, ...]]) -> None:
        super().__init__(conn, sid)
        self.events = events
        self.recv_window = self.window = STREAM_WINDOW  # room for every frame the test sends

    def received_headers(self, block: bytes, end: bool) -> None:
        self.events.append(("headers", self.id, block, end))

    def received_data(self, payload: memoryview | bytes, end: bool) -> None:
        self.events.append(("data", self.id, bytes(payload), end))


class Parser(Connection):
    """A connection whose streams 1, 3 and 5 are open and record what arrives on them."""

    def __init__(self) -> None:
        super().__init__()
        self.events: list[tuple[Any, ...]] = []
        for sid in (1, 3, 5):
            self.streams[sid] = Recording(self, sid, self.events)
        self.connection_made(MemoryTransport())  # type: ignore[arg-type]

    def headers_received(self, sid: int, block: bytes, end: bool) -> None:
        stream = self.streams[sid]
        if end:
            stream._mark_received_end()
        stream.received_headers(block, end)

    def goaway_received(self, last_stream_id: int, code: int, debug: bytes) -> None:
        self.events.append(("goaway", last_stream_id, code, debug))

    def merged(self) -> list[tuple[Any, ...]]:
        """Events with a DATA frame's pieces joined (a frame may arrive over several reads)."""
        out: list[tuple[Any, ...]] = []
        for ev in self.events:
            if ev[0] == "data" and out and out[-1][0] == "data" and out[-1][1] == ev[1] and not out[-1][3]:
                out[-1] = ("data", ev[1], out[-1][2] + ev[2], ev[3])
            else:
                out.append(ev)
        return out

    def empty_pieces(self) -> int:
        """DATA handed on without bytes and without ending the stream: zero-length frames only."""
        return sum(1 for ev in self.events if ev[0] == "data" and not ev[2] and not ev[3])


def traffic() -> bytes:
    rnd = random.Random(3)
    parts = [
        f.settings_frame([(f.SETTINGS_MAX_FRAME_SIZE, 1 << 20)]),
        f.frame(f.HEADERS, f.END_HEADERS, 1, b"\x82\x86"),
        f.frame(f.HEADERS, 0, 3, b"abc") + f.frame(f.CONTINUATION, f.END_HEADERS, 3, b"def"),
        f.frame(f.PING, 0, 0, b"12345678"),
        f.frame(f.HEADERS, f.END_HEADERS | f.PADDED | f.PRIORITY_FLAG, 5, b"\x02" + b"PRIOR" + b"hdr" + b"\x00\x00"),
    ]
    for i in range(40):
        sid = (1, 3, 5)[i % 3]
        size = rnd.choice([0, 1, 8, 9, 10, 100, 5000, 70000])
        payload = rnd.randbytes(size)
        if i % 7 == 3:
            parts.append(f.frame(f.DATA, f.PADDED, sid, b"\x03" + payload + b"\x00\x00\x00"))
        else:
            parts.append(f.frame(f.DATA, 0, sid, payload))
        if i % 5 == 0:
            parts.append(f.window_update_frame(sid, 1000))
        if i % 9 == 0:
            parts.append(f.frame(f.PRIORITY, 0, sid, b"\x00\x00\x00\x00\x10"))
    parts += [f.frame(f.DATA, f.END_STREAM, 1, b"last"), f.frame(f.HEADERS, f.END_HEADERS | f.END_STREAM, 3, b"t")]
    parts.append(f.goaway_frame(7, 0, b"bye"))
    return b"".join(parts)


def feed(data: bytes, cuts: list[int]) -> Parser:
    p = Parser()
    start = 0
    for cut in [*cuts, len(data)]:
        p.data_received(memoryview(data)[start:cut])
        start = cut
    p._flush_out()
    return p


async def test_every_split_of_the_bytes_gives_the_same_frames() -> None:
    data = traffic()
    whole = feed(data, [])
    expected = whole.merged()
    assert ("goaway", 7, 0, b"bye") in expected
    assert ("headers", 3, b"abcdef", False) in expected
    assert ("headers", 5, b"hdr", False) in expected
    assert f.frame(f.PING, f.ACK, 0, b"12345678") in b"".join(whole.transport.written)  # type: ignore[union-attr]
    rnd = random.Random(11)
    for trial in range(60):
        if trial < 3:  # byte by byte, then in frame-header-sized and odd-sized steps
            step = (1, 9, 13)[trial]
            cuts = list(range(step, len(data), step))
        else:
            cuts = sorted(rnd.sample(range(1, len(data)), rnd.randint(1, 200)))
        split = feed(data, cuts)
        assert split.merged() == expected, f"trial {trial}"
        assert split.empty_pieces() == whole.empty_pieces(), f"trial {trial}: a read boundary made an empty piece"
        assert split.streams.keys() == whole.streams.keys()
        assert [s.recv_window for s in split.streams.values()] == [s.recv_window for s in whole.streams.values()]
