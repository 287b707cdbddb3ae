"""How much receive window the relay grants: flow control, not memory, absorbs a slow reader.

Every byte a peer may send ahead on a stream is a byte the gateway may have to hold until the other
side takes it: a client that stops reading its results leaves the driver's response queued here,
up to the window the gateway granted the driver for that stream. So windows are granted from a
budget. Each stream starts with the HTTP/2 default window (:data:`INITIAL_WINDOW`, 64 KiB, for which
nothing is taken); one that uses it (half of it is in flight) grows to :data:`~.stream.STREAM_WINDOW`
with bytes taken from its client connection's :class:`WindowBudget`, both directions together (the
client's uploads, and its drivers' responses), which is itself held to a :class:`ByteBudget` for the
whole gateway. When the budget is spent a stream keeps the window it has: it goes on, at the pace
its window allows, and grows when another stream of the connection ends and gives its bytes back.

What a client can make the gateway hold is therefore about its connection's budget, plus 64 KiB per
stream it has open, plus what sits in the socket's write buffer (:data:`~.stream.WRITE_HIGH_WATER`).
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING

from sparkgate.config import Http2Limits
from sparkgate.gateway.h2 import frames as f

if TYPE_CHECKING:
    from sparkgate.gateway.h2.stream import Stream

#: Window every stream starts with, before it takes anything from a budget: the RFC's default.
INITIAL_WINDOW = f.DEFAULT_WINDOW


class ByteBudget:
    """Bytes shared by many users, up to ``limit``."""

    __slots__ = ("limit", "used", "waiting")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        #: Streams that wanted more than this budget had left, served first-come when bytes come back.
        self.waiting: deque[Stream] = deque()

    @property
    def free(self) -> int:
        return self.limit - self.used


class WindowBudget(ByteBudget):
    """Window bytes one client connection's streams may take, within the gateway's ``shared`` budget."""

    __slots__ = ("shared",)

    def __init__(self, limit: int, shared: ByteBudget) -> None:
        super().__init__(limit)
        self.shared = shared

    def take(self, want: int) -> int:
        """Up to ``want`` bytes: as many as this connection and the gateway have left."""
        n = min(want, self.limit - self.used, self.shared.limit - self.shared.used)
        if n <= 0:
            return 0
        self.used += n
        self.shared.used += n
        return n

    def short_of(self) -> ByteBudget:
        """The budget that stopped a stream growing: this connection's, or the gateway's."""
        return self if self.free <= 0 else self.shared

    def give(self, n: int) -> None:
        """``n`` bytes back (a stream ended): streams of this connection waiting for room grow into
        them, then those of any connection that waited for the gateway's budget."""
        self.used -= n
        shared = self.shared
        shared.used -= n
        waiting = self.waiting
        while waiting and self.free > 0 and shared.free > 0:
            _serve(waiting.popleft())
        waiting = shared.waiting
        while waiting and shared.free > 0:
            _serve(waiting.popleft())  # (one whose own connection has no room waits there instead)


def _serve(stream: Stream) -> None:
    stream.waiting = None
    stream.grow()


class SharedBudgets:
    """What all client connections of one engine share: bytes of first messages held while calls
    are routed (:meth:`~.downstream.ClientConnection.reserve`), and bytes of stream windows."""

    __slots__ = ("held", "windows")

    def __init__(self, limits: Http2Limits) -> None:
        self.held = ByteBudget(limits.max_held_bytes_total)
        self.windows = ByteBudget(limits.relay_window_bytes_total)
