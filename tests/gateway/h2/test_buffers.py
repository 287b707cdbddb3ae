"""The read arena: buffers are reused only once no view of them is left, and never overlap a loan;
streams waiting on a slow reader do not pin them with small pieces."""

from __future__ import annotations

import threading

from sparkgate.gateway.h2 import buffers
from sparkgate.gateway.h2.buffers import MIN_READ, SLAB_BYTES, ReadArena
from sparkgate.gateway.h2.connection import Connection
from sparkgate.gateway.h2.downstream import ClientConnection, ClientStream
from sparkgate.gateway.h2.stream import COPY_WHEN_BLOCKED, Stream


def read(a: ReadArena, data: bytes) -> memoryview:
    """What a transport does: borrow, fill, hand back the count."""
    loan = a.lend()
    assert len(loan) >= max(MIN_READ, len(data))
    loan[: len(data)] = data
    del loan  # the transport lets go of it once the read is done
    return a.filled(len(data))


def test_a_slab_nobody_holds_is_read_into_again_from_its_start() -> None:
    a = ReadArena()
    first = read(a, b"x" * 1000)
    slab = id(first.obj)
    del first
    second = read(a, b"y" * 10)
    assert id(second.obj) == slab
    assert second.obj[:10] == b"y" * 10  # the same memory, from offset 0
    assert a.held_slabs == 0


def test_a_view_kept_alive_keeps_its_bytes_through_any_number_of_later_reads() -> None:
    a = ReadArena()
    kept = read(a, b"keep-me!" * 1000)
    later = [read(a, bytes([i % 251]) * MIN_READ) for i in range(100)]  # several slabs
    assert kept.tobytes() == b"keep-me!" * 1000
    for i, view in enumerate(later):
        assert view.tobytes() == bytes([i % 251]) * MIN_READ


def test_views_never_overlap_while_alive() -> None:
    a = ReadArena()
    views = [read(a, bytes([i]) * 60_000) for i in range(50)]
    for i, view in enumerate(views):
        assert view.tobytes() == bytes([i]) * 60_000


def test_a_held_slab_is_set_aside_and_reused_once_free() -> None:
    a = ReadArena()
    held = read(a, b"a" * (SLAB_BYTES - MIN_READ + 1))  # too little room left: the next read moves on
    held_slab = id(held.obj)  # (not the object: a reference would keep it held)
    nxt = read(a, b"b" * 10)
    assert id(nxt.obj) != held_slab
    assert a.held_slabs == 1
    del held, nxt
    # The current slab is free again, so it is reused; fill it up to force another move.
    big = read(a, b"c" * (SLAB_BYTES - MIN_READ + 1))
    after = read(a, b"d")
    assert id(after.obj) == held_slab  # the set-aside slab, now that its view is gone
    assert big.tobytes() == b"c" * (SLAB_BYTES - MIN_READ + 1)


def test_a_loan_that_read_nothing_is_lent_again_without_using_up_memory() -> None:
    a = ReadArena()
    kept = read(a, b"kept")
    for _ in range(10_000):  # e.g. a read that found no data (EAGAIN): get_buffer, no buffer_updated
        a.lend()
    after = read(a, b"next")
    assert a.slabs_made == 1
    assert kept.tobytes() == b"kept"
    assert after.tobytes() == b"next"


def test_reads_on_quiet_connections_reuse_one_slab() -> None:
    a = ReadArena()
    for i in range(10_000):  # request/response traffic: each read is parsed and let go
        view = read(a, i.to_bytes(4, "big") * 50)
        assert view.tobytes() == i.to_bytes(4, "big") * 50
        del view
    assert a.slabs_made == 1


def test_the_number_of_set_aside_slabs_is_bounded() -> None:
    a = ReadArena()
    pinned = [read(a, b"p" * (SLAB_BYTES - MIN_READ + 1)) for _ in range(buffers.MAX_RETIRED + 10)]
    assert a.held_slabs <= buffers.MAX_RETIRED + 1
    assert all(v.tobytes() == b"p" * (SLAB_BYTES - MIN_READ + 1) for v in pinned)


def test_slabs_a_burst_left_behind_are_let_go_except_a_few() -> None:
    a = ReadArena()
    pinned = [read(a, b"p" * (SLAB_BYTES - MIN_READ + 1)) for _ in range(6)]  # a slow reader's
    assert a.held_slabs == 5
    a.shed()
    assert a.held_slabs == 5  # still held: kept, to be reused once free
    del pinned
    read(a, b"more")
    a.shed()
    assert a.held_slabs == 5  # free, but reads go on: kept for them (no page faults on fresh maps)
    a.shed()
    assert a.held_slabs == buffers.KEEP_FREE  # quiet for a sweep: let go


def test_any_free_slab_set_aside_is_reused() -> None:
    a = ReadArena()
    first = read(a, b"p" * (SLAB_BYTES - MIN_READ + 1))
    second = read(a, b"q" * (SLAB_BYTES - MIN_READ + 1))  # (slab 2; slab 1 set aside, held)
    read(a, b"r" * (SLAB_BYTES - MIN_READ + 1))  # slab 3; slab 2 set aside, held
    del second
    read(a, b"s" * (SLAB_BYTES - MIN_READ + 1))  # slab 2 is free again, slab 1 still held
    assert a.slabs_made == 3 and first.tobytes()[:1] == b"p"


def test_each_thread_has_its_own_arena() -> None:
    seen: list[ReadArena] = []
    t = threading.Thread(target=lambda: seen.append(buffers.arena()))
    t.start()
    t.join()
    assert seen[0] is not buffers.arena()


async def test_a_blocked_stream_copies_small_pieces_out_of_their_read_buffer() -> None:
    conn = Connection()
    stream = Stream(conn, 1)
    conn.streams[1] = stream
    stream.send_window = 0  # the reader is slow: nothing may be sent
    a = ReadArena()
    small = read(a, b"s" * 100)
    big = read(a, b"b" * COPY_WHEN_BLOCKED)
    stream.send_data(small, False)
    stream.send_data(big, False)
    del small, big
    kinds = [type(payload) for _, payload, _ in stream.queue]
    assert kinds == [bytes, memoryview]  # the big piece stays a view: copying it would cost more
    assert stream in conn.blocked
    assert [bytes(p) for _, p, _ in stream.queue] == [b"s" * 100, b"b" * COPY_WHEN_BLOCKED]


class _WaitingRouter:
    """A router that is still deciding (as while a driver starts): route() returns at once."""

    max_message_bytes = 1 << 20

    def __init__(self) -> None:
        self.routed: list[ClientStream] = []

    def route(self, stream: ClientStream) -> None:
        self.routed.append(stream)


async def test_a_request_waiting_for_its_route_holds_copies_not_read_buffers() -> None:
    router = _WaitingRouter()
    stream = ClientStream(ClientConnection(router), 1)  # type: ignore[arg-type]
    a = ReadArena()
    message = b"\x00" + (4).to_bytes(4, "big") + b"ping"
    stream.received_data(read(a, message), False)  # complete first message: routing starts
    assert router.routed == [stream]
    stream.received_data(read(a, b"more"), False)  # a client stream's next bytes, while routing
    assert [type(h) for h in stream.held] == [memoryview, bytes]
    stream.keep_held()  # routing has to wait: what is held leaves the read buffers
    assert [type(h) for h in stream.held] == [bytes, bytes]
    assert b"".join(stream.held) == message + b"more"
    assert a.slabs_made == 1
