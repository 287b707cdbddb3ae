"""Stream windows grow from a budget: a stream that uses its window gets more while there is room,
and bytes go back when calls end (or, for bytes still on their way on, when the partner does)."""

from __future__ import annotations

import asyncio

from sparkgate.gateway.h2 import frames as f
from sparkgate.gateway.h2.budget import INITIAL_WINDOW, ByteBudget, WindowBudget
from sparkgate.gateway.h2.connection import STREAM_WINDOW, Connection, Stream
from sparkgate.testing.h2_doubles import MemoryTransport

MIB = 1024 * 1024


class Quiet(Stream):
    """Keeps nothing: what arrives is dropped (the tests look at windows only)."""

    def received_data(self, payload: memoryview | bytes, end: bool) -> None:
        pass


class Peer(Connection):
    def __init__(self) -> None:
        super().__init__()
        self.transport_ = MemoryTransport()
        self.connection_made(self.transport_)  # type: ignore[arg-type]

    def open(self, sid: int, budget: WindowBudget | None) -> Quiet:
        stream = self.streams[sid] = Quiet(self, sid)
        stream.budget = budget
        return stream

    def headers_received(self, sid: int, block: bytes, end: bool) -> None:
        pass

    def window_updates(self) -> dict[int, int]:
        """WINDOW_UPDATE increments written, by stream."""
        self._flush_out()
        data, pos, found = b"".join(bytes(p) for p in self.transport_.written), 0, {}
        while pos + 9 <= len(data):
            length, type_, _, sid = f.parse_frame_header(data[pos : pos + 9])
            if type_ == f.WINDOW_UPDATE and sid:
                found[sid] = found.get(sid, 0) + int.from_bytes(data[pos + 9 : pos + 13], "big")
            pos += 9 + length
        return found


def data(sid: int, n: int) -> bytes:
    return f.frame(f.DATA, 0, sid, bytes(n))


async def test_a_stream_that_uses_its_window_grows_it_while_the_budget_has_room() -> None:
    conn = Peer()
    budget = WindowBudget(64 * MIB, ByteBudget(1024 * MIB))
    small, busy = conn.open(1, budget), conn.open(3, budget)
    conn.data_received(data(1, 1000))  # a small response: its window stays the default
    conn.data_received(data(3, INITIAL_WINDOW * 2 // 3))  # over half the window in flight: grows
    assert (small.window, busy.window) == (INITIAL_WINDOW, STREAM_WINDOW)
    assert conn.window_updates() == {3: STREAM_WINDOW - INITIAL_WINDOW}
    assert budget.used == budget.shared.used == STREAM_WINDOW - INITIAL_WINDOW
    conn.close_stream(busy)
    assert budget.used == budget.shared.used == 0


async def test_when_the_budget_is_spent_streams_keep_their_window_and_grow_once_bytes_come_back() -> None:
    conn = Peer()
    grown = STREAM_WINDOW - INITIAL_WINDOW  # what a stream takes to grow in full
    budget = WindowBudget(2 * grown - MIB, ByteBudget(1024 * MIB))
    a, b, c = conn.open(1, budget), conn.open(3, budget), conn.open(5, budget)
    for sid in (1, 3, 5):
        conn.data_received(data(sid, INITIAL_WINDOW - 1))
    # a grew in full, b as far as the budget went, c not at all: both wait for room.
    assert (a.window, b.window, c.window) == (STREAM_WINDOW, STREAM_WINDOW - MIB, INITIAL_WINDOW)
    assert c.recv_window == 1  # c goes on with the window it has
    assert budget.free == 0 and list(budget.waiting) == [b, c]
    conn.close_stream(a)  # its bytes go to those waiting, first come first
    assert (b.window, c.window) == (STREAM_WINDOW, STREAM_WINDOW - MIB)
    assert c.recv_window == 1 + grown - MIB
    assert list(budget.waiting) == [c] and budget.free == 0


async def test_the_gateway_wide_budget_bounds_every_connection_and_comes_back_to_any_of_them() -> None:
    shared = ByteBudget(8 * MIB)
    one, two = Peer(), Peer()
    first = one.open(1, WindowBudget(64 * MIB, shared))
    second = two.open(1, WindowBudget(64 * MIB, shared))
    one.data_received(data(1, INITIAL_WINDOW))
    two.data_received(data(1, INITIAL_WINDOW))
    assert first.window == INITIAL_WINDOW + 8 * MIB and second.window == INITIAL_WINDOW
    assert shared.used == 8 * MIB and list(shared.waiting) == [first, second]
    one.close_stream(first)  # the other connection's stream grows into what came back
    assert second.window == INITIAL_WINDOW + 8 * MIB and shared.used == 8 * MIB
    assert list(shared.waiting) == [second] and first.waiting is None  # it would still take more


async def test_a_stream_whose_sender_is_done_takes_nothing_and_waits_for_nothing() -> None:
    conn = Peer()
    budget = WindowBudget(64 * MIB, ByteBudget(1024 * MIB))
    whole, grown = conn.open(1, budget), conn.open(3, budget)
    # An upload in one frame that ends the stream: no window is wanted after it.
    conn.data_received(f.frame(f.DATA, f.END_STREAM, 1, bytes(INITIAL_WINDOW - 1)))
    assert whole.window == INITIAL_WINDOW and budget.used == 0
    # One that grew, then ended: what it took comes back at once (nothing of it waits to be sent).
    conn.data_received(data(3, INITIAL_WINDOW - 1))
    assert budget.used == STREAM_WINDOW - INITIAL_WINDOW
    conn.data_received(f.frame(f.DATA, f.END_STREAM, 3, b"x"))
    assert budget.used == 0 and grown.taken == 0


async def test_a_stream_that_ends_while_waiting_for_room_leaves_the_queue() -> None:
    conn = Peer()
    budget = WindowBudget(1 * MIB, ByteBudget(1024 * MIB))
    a, b = conn.open(1, budget), conn.open(3, budget)
    conn.data_received(data(1, INITIAL_WINDOW - 1) + data(3, INITIAL_WINDOW - 1))
    assert list(budget.waiting) == [a, b]
    conn.close_stream(b)
    assert list(budget.waiting) == [a] and b.waiting is None


async def test_bytes_still_on_their_way_stay_counted_until_the_partner_has_sent_them() -> None:
    """A driver's response may end while the client has not read it: the window's bytes are
    handed to the client's stream, and come back when it ends."""
    driver, client = Peer(), Peer()
    budget = WindowBudget(64 * MIB, ByteBudget(1024 * MIB))
    upstream, downstream = driver.open(1, budget), client.open(1, budget)
    upstream.partner, downstream.partner = downstream, upstream
    driver.data_received(data(1, INITIAL_WINDOW))
    taken = upstream.taken
    assert taken == STREAM_WINDOW - INITIAL_WINDOW
    downstream.send_window = 0  # the client does not read
    downstream.send_data(b"x" * 1000, True)
    driver.close_stream(upstream)
    assert (upstream.taken, downstream.taken, budget.used) == (0, taken, taken)
    client.close_stream(downstream)
    assert budget.used == 0


async def test_a_lost_connection_gives_every_stream_s_bytes_back() -> None:
    conn = Peer()
    budget = WindowBudget(64 * MIB, ByteBudget(1024 * MIB))
    for sid in (1, 3):
        conn.open(sid, budget)
        conn.data_received(data(sid, INITIAL_WINDOW))
    assert budget.used == 2 * (STREAM_WINDOW - INITIAL_WINDOW)
    conn.connection_lost(None)
    assert budget.used == budget.shared.used == 0
    await asyncio.sleep(0)
