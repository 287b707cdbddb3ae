"""One HTTP/2 connection on asyncio: the :class:`~.protocol.H2Protocol` state on a transport.

:class:`Connection` reads into buffers lent by the thread's :class:`~.buffers.ReadArena` (no copy
between the socket and the frame parser) and hands them to the protocol. What the protocol queues
is written in one ``writelines`` per event-loop turn, except that large DATA goes out at once: the
peer starts reading while the next read is parsed, and the bytes are written while they are still
in cache. A read with more than ``frames_per_turn`` frames is finished in later loop turns, with
reading paused meanwhile, so one connection cannot hold the loop. A connection error closes after
the GOAWAY saying why, reading (and dropping) what the peer still sends for a while.

While a large DATA frame is still arriving, the socket is told not to wake the loop until
:data:`RECV_LOWAT` more bytes are there (``SO_RCVLOWAT``): the peer has already committed to send
them (a frame's length comes first), so waiting for them cannot stall, and the relay makes fewer,
larger reads and writes, which saves CPU at the sender and the reader as well as here.
"""

from __future__ import annotations

import asyncio
import socket
import sys
from typing import Any, cast

from sparkgate.gateway.h2.buffers import arena
from sparkgate.gateway.h2.protocol import (
    DRIVER_HEADER_BLOCK,
    MAX_CONTROL_FRAME,
    MAX_FRAME,
    STREAM_WINDOW,
    WRITE_HIGH_WATER,
    H2Protocol,
    Stream,
)

__all__ = ["DRIVER_HEADER_BLOCK", "MAX_CONTROL_FRAME", "MAX_FRAME", "STREAM_WINDOW", "Connection", "Stream"]

#: While at least this much of a DATA frame is still to come, a read waits until it has arrived.
#: Measured (``bench/relay_bench.py``, paired runs): 256 KiB streamed 2.5-4 % faster than waking
#: on every arrival (128 KiB less so); 1 MiB with 4 MiB read slabs another 2.4 % in 18 runs and
#: 0.3 % in 14 more.
RECV_LOWAT = 1024 * 1024
#: Seconds a connection ended by a connection error keeps reading (and dropping) what the peer still
#: sends after our GOAWAY: closing with unread data would reset the connection, and the peer would
#: lose the GOAWAY that says why (nginx's lingering close).
LINGER_SECONDS = 2.0


class Connection(H2Protocol, asyncio.BufferedProtocol):
    """The protocol on an asyncio transport (both legs)."""

    #: Whether a closing connection keeps reading for LINGER_SECONDS (clients' do; a driver's
    #: connection is closed at once, its calls fail over as soon as it is gone).
    lingers = False

    def __init__(self) -> None:
        super().__init__()
        self.live = False  # until connection_made
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.closed = asyncio.Event()
        self._scheduled = False
        self._arena = arena()
        #: The socket whose SO_RCVLOWAT follows the DATA frame being received (None: not used).
        self._lowat_socket: Any = None
        self._lowat = 1

    def take_transport(self) -> asyncio.Transport | None:
        """Stop using the transport (it is closed by the caller): nothing more is read or written."""
        transport, self.transport = self.transport, None
        self.live = False
        return transport

    # -- writing ------------------------------------------------------------------------------

    def _wants_write(self) -> None:
        """Write what is queued once this event-loop turn's callbacks are done (one write for all)."""
        if not self._scheduled:
            self._scheduled = True
            self.loop.call_soon(self._flush_out)

    def _write_now(self) -> None:
        self._flush_out()

    def _flush_out(self) -> None:
        self._scheduled = False
        out, self._out = self._out, []
        if out and self.transport is not None and not self.transport.is_closing():
            self.transport.writelines(out)

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.writable()

    # -- lifecycle -----------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but have the same methods.
        self.transport = cast(asyncio.Transport, transport)
        self.live = True
        self.transport.set_write_buffer_limits(high=WRITE_HIGH_WATER)
        self._lowat_socket = _lowat_socket(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.lost()
        self.closed.set()

    def _ended(self) -> None:
        """Close after our last frames, so the peer gets them: half-close, then drop what it still
        sends for :data:`LINGER_SECONDS` (closing with unread input would reset the connection).
        A peer that is not reading what we write would keep the connection open while its last
        bytes wait to be sent: it is cut off at once."""
        transport = self.transport
        self.transport = None
        if transport is None:
            return
        if self.paused or not self.lingers:
            (transport.abort if self.paused else transport.close)()
            return
        self._backlog = None
        if self._lowat_socket is not None and self._lowat != 1:
            self._set_lowat(1)
        transport.resume_reading()  # reading may have been paused for a deferred read
        if transport.can_write_eof():
            try:
                transport.write_eof()
            except OSError:  # the peer is gone already: nothing to linger for
                transport.abort()
                return
        self.loop.call_later(LINGER_SECONDS, transport.close)

    def _close_lingering(self, transport: asyncio.Transport) -> None:
        """End the connection with ``transport`` (already taken) the way a connection error does."""
        self.transport = transport
        self._ended()

    def abort(self) -> None:
        if self.transport is not None:
            self._flush_out()
            self.transport.abort()

    # -- reading -------------------------------------------------------------------------------

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._arena.lend()

    def buffer_updated(self, nbytes: int) -> None:
        self.data_received(self._arena.filled(nbytes))
        if self._lowat_socket is not None:
            want = RECV_LOWAT if self._data_left >= RECV_LOWAT else 1
            if want != self._lowat:
                self._set_lowat(want)

    def _set_lowat(self, nbytes: int) -> None:
        try:
            self._lowat_socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, nbytes)
        except OSError:  # closed meanwhile, or not supported: read on every arrival
            self._lowat_socket = None
        else:
            self._lowat = nbytes

    def data_received(self, data: bytes | memoryview) -> None:
        self.receive(data)

    def _defer(self, rest: memoryview) -> None:
        """Leave the rest of this read for a later loop turn (other connections go first)."""
        assert self.transport is not None
        self._backlog = bytes(rest)
        self.transport.pause_reading()
        self.loop.call_soon(self._continue)

    def _continue(self) -> None:
        data, self._backlog = self._backlog, None
        if data is None or self.transport is None:
            return
        self.data_received(data)
        if self._backlog is None and self.transport is not None:
            self.transport.resume_reading()


def _lowat_socket(transport: asyncio.BaseTransport) -> Any:
    """The transport's socket if waiting for SO_RCVLOWAT bytes is safe on it, else None.

    Only plain TCP on Linux: there a socket is readable once that many bytes arrived, or at EOF
    or an error. Under TLS part of what is still to come may already sit, undecrypted, in the TLS
    layer's buffer, so the socket might never receive that many more bytes.
    """
    sock = transport.get_extra_info("socket")
    if sys.platform != "linux" or sock is None or transport.get_extra_info("ssl_object") is not None:
        return None
    if sock.family not in {socket.AF_INET, socket.AF_INET6} or sock.type != socket.SOCK_STREAM:
        return None
    return sock
