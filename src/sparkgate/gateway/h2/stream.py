"""A stream of the relay: one HTTP/2 stream on one connection, paired with a ``partner`` on the other.

Sending queues HEADERS and DATA in order and writes DATA only within the peer's stream and
connection windows (and while the socket's write buffer is below its high-water mark). Bytes
received on a stream are credited back to their sender only once the partner wrote them on
(:meth:`Stream.consumed`), so a slow reader on one side slows the writer on the other, and the
gateway holds at most one stream window per direction of each relayed call. How large that window
grows is up to the client connection's budget (:mod:`.budget`).
"""

from __future__ import annotations

import contextlib
from collections import deque
from typing import TYPE_CHECKING, Any

from sparkgate.gateway.h2 import frames as f
from sparkgate.gateway.h2.budget import INITIAL_WINDOW

if TYPE_CHECKING:
    from sparkgate.gateway.h2.budget import WindowBudget
    from sparkgate.gateway.h2.protocol import H2Protocol

#: Receive window a stream that uses its window grows to, budget permitting: bytes a peer may send
#: ahead of what we wrote on. 16 MiB keeps a 4 MiB Arrow batch pipeline full on loopback without
#: per-frame WINDOW_UPDATEs.
STREAM_WINDOW = 16 * 1024 * 1024
#: Largest frame we accept (and ask the driver for): fewer, larger DATA frames cost less CPU.
MAX_FRAME = f.MAX_FRAME_LIMIT
#: Socket write-buffer high-water mark: above it, DATA waits (control frames do not). Small, so a
#: slow reader holds back the sender (flow control) rather than filling the gateway's memory, and
#: what waits in the socket's buffer is still in cache when it is written.
WRITE_HIGH_WATER = 1024 * 1024

#: Queued DATA pieces smaller than this are copied out of their read buffer when a stream blocks.
COPY_WHEN_BLOCKED = 64 * 1024

_DATA_KIND, _HEADERS_KIND = 0, 1


class Stream:
    """One stream on one connection; ``partner`` is the stream it is relayed to and from."""

    __slots__ = (
        "budget",
        "conn",
        "credit",
        "id",
        "partner",
        "precredited",
        "queue",
        "recv_end",
        "recv_window",
        "send_window",
        "sent_end",
        "taken",
        "waiting",
        "window",
    )

    def __init__(self, conn: H2Protocol, stream_id: int) -> None:
        self.conn = conn
        self.id = stream_id
        self.send_window = conn.peer_initial_window
        self.recv_window = INITIAL_WINDOW
        #: The receive window granted in all (``recv_window`` is what is left of it now).
        self.window = INITIAL_WINDOW
        #: Where the window grows from (None: it stays at INITIAL_WINDOW), and what it took there.
        self.budget: WindowBudget | None = None
        self.taken = 0
        #: The queue this stream waits in for room to grow (None: it does not wait).
        self.waiting: deque[Stream] | None = None
        self.queue: deque[tuple[int, Any, bool]] = deque()
        self.partner: Stream | None = None
        self.credit = 0
        #: Bytes credited to the sender before they were written on (held while routing).
        self.precredited = 0
        self.sent_end = False
        self.recv_end = False

    @property
    def closed(self) -> bool:
        return self.conn.streams.get(self.id) is not self

    # -- receiving (overridden by the two legs) -----------------------------------------------

    def received_headers(self, block: bytes, end: bool) -> None:
        raise NotImplementedError

    def received_data(self, payload: memoryview | bytes, end: bool) -> None:
        raise NotImplementedError

    def received_reset(self, code: int) -> None:
        """The peer reset this stream (it is already closed here)."""

    def connection_lost(self) -> None:
        """This stream's connection is gone (the stream is already closed)."""

    def _mark_received_end(self) -> None:
        self.recv_end = True
        if self.taken or self.waiting is not None:
            self.release()
        if self.sent_end:
            self.conn.close_stream(self)

    # -- sending -------------------------------------------------------------------------------

    def send_headers(self, block: bytes, end: bool) -> None:
        if self.queue:
            self.queue.append((_HEADERS_KIND, block, end))
            return
        self.conn.write_headers(self.id, block, end)
        if end:
            self._mark_sent_end()

    def send_data(self, payload: memoryview | bytes, end: bool) -> None:
        if self.queue or not self._write_data(payload, end):
            self.queue.append((_DATA_KIND, payload, end))
            if len(self.queue) == 1:
                self.flush()  # writes what the windows allow now, or marks the stream blocked

    def reset(self, code: int) -> None:
        """Send RST_STREAM and forget the stream (queued frames are dropped)."""
        if self.closed:
            return
        self.queue.clear()
        self.conn.send_frame(f.rst_stream_frame(self.id, code))
        self.conn.close_stream(self)

    def _write_data(self, payload: memoryview | bytes, end: bool) -> bool:
        """Write ``payload`` whole if the windows and the socket allow it now (False: nothing written)."""
        conn, size = self.conn, len(payload)
        if size > self.send_window or size > conn.send_window or conn.paused:
            return False
        self._send(payload, size, end)
        if end:
            self._mark_sent_end()
        return True

    def _send(self, payload: memoryview | bytes, n: int, end: bool) -> None:
        """Frame the first ``n`` bytes (windows checked), spend the windows, credit the partner's sender."""
        self.conn.write_data(self.id, payload, n, end)
        self.send_window -= n
        self.conn.send_window -= n
        if self.partner is not None:
            self.partner.consumed(n)

    def flush(self) -> None:
        conn, q = self.conn, self.queue
        while q:
            kind, payload, end = q[0]
            if kind == _HEADERS_KIND:
                q.popleft()
                conn.write_headers(self.id, payload, end)
                if end:
                    self._mark_sent_end()
                continue
            size = len(payload)
            n = min(size, self.send_window, conn.send_window)
            if (n <= 0 and size) or conn.paused:
                self._blocked()
                return
            self._send(payload, n, end and n == size)
            if n < size:
                q[0] = (kind, payload[n:], end)
                self._blocked()
                return
            q.popleft()
            if end:
                self._mark_sent_end()

    def _blocked(self) -> None:
        """Wait for window or socket room; meanwhile, small pieces stop pinning their read buffers.

        A queued DATA piece is a view of the buffer it was read into, which cannot be reused while
        the view lives (:mod:`.buffers`): a few bytes waiting for a slow reader would hold a whole
        read buffer. Pieces under :data:`COPY_WHEN_BLOCKED` are copied out when the stream blocks.
        """
        self.conn.blocked[self] = None
        q = self.queue
        for i, (kind, payload, end) in enumerate(q):
            if kind == _DATA_KIND and type(payload) is memoryview and len(payload) < COPY_WHEN_BLOCKED:
                q[i] = (kind, bytes(payload), end)

    def _mark_sent_end(self) -> None:
        self.sent_end = True
        if self.recv_end:
            self.conn.close_stream(self)

    def consumed(self, n: int) -> None:
        """``n`` bytes received on this stream were written on: give the sender its credit back."""
        if self.precredited:
            k = min(n, self.precredited)
            self.precredited -= k
            n -= k
        self.credit += n
        if self.credit >= self.window >> 2:
            self.grant(self.credit)
            self.credit = 0

    # -- the window's size ---------------------------------------------------------------------

    def spend(self, n: int, end: int) -> bool:
        """``n`` bytes of DATA arrived (False: more than the window allowed). A stream with half
        its window in flight grows it, if its budget has room and the sender is not done."""
        left = self.recv_window = self.recv_window - n
        if left < 0:
            return False
        if left < self.window >> 1 and self.budget is not None and not end:
            self.grow()
        return True

    def grow(self) -> None:
        """Take what the budget gives, up to STREAM_WINDOW in all, and grant it to the sender; if
        that is less than wanted, wait for room (:meth:`~.budget.WindowBudget.give`)."""
        budget = self.budget
        want = STREAM_WINDOW - self.window
        if budget is None or want <= 0 or self.recv_end or self.closed:
            return
        n = budget.take(want)
        if n:
            self.window += n
            self.taken += n
            self.grant(n)
        if n < want and self.waiting is None:
            self.waiting = budget.short_of().waiting
            self.waiting.append(self)

    def release(self) -> None:
        """The stream needs no more window (its sender is done, or it left its connection): what
        its window took goes back to the budget. If its partner is still sending on what arrived
        here, the partner holds the bytes until it ends."""
        if self.waiting is not None:
            with contextlib.suppress(ValueError):
                self.waiting.remove(self)
            self.waiting = None
        taken, self.taken = self.taken, 0
        budget = self.budget
        if budget is None or not taken:
            return
        partner = self.partner
        if partner is not None and partner.budget is budget and partner.queue and not partner.closed:
            partner.taken += taken
            return
        budget.give(taken)

    def grant(self, n: int) -> None:
        if n > 0 and not self.recv_end and not self.closed:
            self.recv_window += n
            self.conn.send_frame(f.window_update_frame(self.id, n))
