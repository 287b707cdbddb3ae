"""Zero-copy results: DATA payload moved from a driver's socket to a client's with ``splice(2)``.

A relayed result stream is mostly DATA payload the gateway never looks at. Read into Python and
written out again, each byte is copied three or four times in this process (kernel → user, maybe
into a new ``bytes``, user → kernel), which costs more CPU than nginx's whole relay. Spliced, the
payload goes from the driver's socket into a kernel pipe and from the pipe into the client's socket
without ever being mapped here. The pieces:

* :class:`SocketTransport` is the driver connections' transport: a plain TCP socket on the event
  loop's ``add_reader``/``add_writer`` (an asyncio transport's socket cannot be read around it).
  Before each read it asks its protocol how many of the next bytes are DATA payload that may go
  straight to a client (:meth:`SpliceSource.splice_size`), splices those into that client's pipe
  and reads everything else (frame headers, HEADERS, small frames) as usual.
* :class:`Splicer` is a plain-TCP client connection's side: a pipe, a duplicate of the client's
  socket, and the one DATA frame being written from the pipe. Until that frame is out, the
  connection holds back its other frames (HTTP/2 frames cannot interleave), and a driver
  connection with more payload for this client stops reading instead of copying it (the bytes wait
  in its socket, TCP pushes back on the driver). So a client that reads slowly costs no CPU here.
  If the driver connection carries other streams, whose frames queue behind this one in the same
  byte stream, it waits at most :data:`WAIT_SECONDS`, then reads the rest of the frame the usual
  way, so one stalled client cannot hold up other sessions on its driver.

When anything else is pending for a stream (data waiting on flow-control windows, a response being
collected for a post-action), the copying path is taken, so byte order is kept as is. TLS client
connections always take the copying path (the bytes must be encrypted in this process).
"""

from __future__ import annotations

import asyncio
import collections
import errno
import fcntl
import logging
import os
import socket
import sys
from collections.abc import Callable
from typing import Any, Protocol

log = logging.getLogger(__name__)

#: Linux's splice(2) with Python's binding for it (3.10+).
SPLICE_SUPPORTED = sys.platform == "linux" and hasattr(os, "splice")
#: Payload moved per splice: a pipe's capacity. 1 MiB is Linux's default ``fs.pipe-max-size``.
PIPE_SIZE = 1024 * 1024
#: Fewer payload bytes than this are read as usual (a splice costs three syscalls per frame).
SPLICE_MIN = 32 * 1024
#: Longest a driver connection carrying other streams stops reading for one slow client.
WAIT_SECONDS = 0.02
#: Bytes read per ``recv`` on the copying path (uvloop's read buffer is the same size).
READ_SIZE = 256 * 1024
#: Bytes read past the end of a frame: the next frame's header, and whole small frames (a unary
#: response is a few hundred bytes), but little of a large DATA frame's payload, which is spliced.
HEADER_READ = 16 * 1024

_FLAGS = os.SPLICE_F_MOVE | os.SPLICE_F_NONBLOCK if SPLICE_SUPPORTED else 0
_F_SETPIPE_SZ, _F_GETPIPE_SZ = 1031, 1032
_IOV_MAX = 1024
_GONE = (errno.EPIPE, errno.ECONNRESET, errno.ENOTCONN, errno.EBADF)


class SpliceStats:
    """Bytes relayed by splicing, process-wide (exported as a metric)."""

    spliced_bytes = 0


class Splicer:
    """A plain-TCP client connection's pipe, and the DATA frame being written from it."""

    def __init__(self, loop: asyncio.AbstractEventLoop, sock_fd: int, on_idle: Callable[[], None]) -> None:
        self._loop = loop
        self.sock = socket.socket(fileno=os.dup(sock_fd))
        self.sock.setblocking(False)
        self._fd = self.sock.fileno()
        self._r, self._w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            fcntl.fcntl(self._w, _F_SETPIPE_SZ, PIPE_SIZE)
        except OSError:  # pragma: no cover - fs.pipe-max-size lowered below 1 MiB
            pass
        #: The pipe's capacity: the most one frame may take.
        self.size: int = fcntl.fcntl(self._w, _F_GETPIPE_SZ)
        self._on_idle = on_idle
        self._header = b""
        self._left = 0
        self._watching = False
        self._waiters: list[Callable[[], None]] = []
        #: The client's socket failed, or the connection closed: nothing more is spliced.
        self.broken = False

    @property
    def busy(self) -> bool:
        """A frame is partly written: nothing else may go to this connection yet."""
        return bool(self._header or self._left)

    def fill(self, fd: int, n: int) -> int:
        """Move up to ``n`` bytes from socket ``fd`` into the (empty) pipe; 0 at EOF."""
        return os.splice(fd, self._w, n, flags=_FLAGS)

    def write_frame(self, header: bytes, n: int) -> None:
        """Write ``header`` and the ``n`` bytes in the pipe; what the socket cannot take yet follows when it can."""
        self._header, self._left = header, n
        self._push()

    def wait(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` at the next :meth:`poke`, when the frame being written is out, when
        the socket can take more (after :meth:`watch`), or when the connection is gone."""
        self._waiters.append(callback)

    def watch(self) -> None:
        """Wake the waiters when the client's socket can take more (its transport has a backlog)."""
        if not self._watching:
            self._watching = True
            self._loop.add_writer(self._fd, self._push)

    @property
    def waiting(self) -> bool:
        return bool(self._waiters)

    def poke(self) -> None:
        """Something a waiter may be waiting for changed (a window opened, the stream ended)."""
        if self._waiters and not self.busy:
            self._wake()

    def unwait(self, callback: Callable[[], None]) -> None:
        if callback in self._waiters:
            self._waiters.remove(callback)

    def _push(self) -> None:
        try:
            if self._header:
                self._header = self._header[self.sock.send(self._header, socket.MSG_MORE) :]
            while self._left and not self._header:
                k = os.splice(self._r, self._fd, self._left, flags=_FLAGS)
                if k <= 0:  # pragma: no cover - a socket that takes nothing without EAGAIN
                    break
                self._left -= k
                SpliceStats.spliced_bytes += k
        except (BlockingIOError, InterruptedError):
            pass
        except OSError as exc:
            if exc.errno not in _GONE:
                log.warning("splicing to a client failed: %s", exc)
            self._drop()
        if self.busy:
            self.watch()
            return
        self._stop_watching()
        self._on_idle()
        self._wake()

    def _stop_watching(self) -> None:
        if self._watching:
            self._watching = False
            self._loop.remove_writer(self._fd)

    def _wake(self) -> None:
        waiters, self._waiters = self._waiters, []
        for callback in waiters:
            callback()

    def _drop(self) -> None:
        """The client is gone: forget the frame (the connection is being lost)."""
        self.broken = True
        self._header, self._left = b"", 0

    def close(self) -> None:
        if self._r < 0:
            return
        self._drop()
        self._stop_watching()
        self.sock.close()
        os.close(self._r)
        os.close(self._w)
        self._r = self._w = -1
        self._wake()


class SpliceSource(Protocol):
    """What :class:`SocketTransport` asks of its protocol besides asyncio.Protocol's callbacks."""

    #: Set by :meth:`splice_size` when it returns > 0: the pipe the bytes go to.
    splice_to: Splicer | None
    #: Set by :meth:`splice_size` when it returns 0: how many bytes to read.
    read_size: int

    def splice_size(self) -> int:
        """> 0: splice that many bytes into ``splice_to``; 0: read as usual; -1: reading was paused."""
        ...

    def spliced(self, n: int) -> None: ...
    def connection_made(self, transport: Any) -> None: ...
    def data_received(self, data: bytes) -> None: ...
    def eof_received(self) -> bool | None: ...
    def connection_lost(self, exc: Exception | None) -> None: ...
    def pause_writing(self) -> None: ...
    def resume_writing(self) -> None: ...


class SocketTransport(asyncio.Transport):
    """A plain TCP transport on ``add_reader``/``add_writer`` that splices payload when its protocol says."""

    def __init__(self, loop: asyncio.AbstractEventLoop, sock: socket.socket, protocol: SpliceSource) -> None:
        super().__init__()
        self._loop = loop
        self._sock = sock
        self._fd = sock.fileno()
        self._protocol = protocol
        self._buffer: collections.deque[memoryview] = collections.deque()
        self._buffered = 0
        self._high = 64 * 1024
        self._low = 16 * 1024
        self._protocol_paused = False
        self._reading = False
        self._closing = False
        self._closed = False
        self._extra = {"socket": sock, "peername": _peername(sock), "sockname": sock.getsockname()}
        protocol.connection_made(self)
        self.resume_reading()

    # -- reading -----------------------------------------------------------------------------

    def _on_readable(self) -> None:
        proto = self._protocol
        try:
            want = proto.splice_size()
            if want > 0:
                assert proto.splice_to is not None
                n = proto.splice_to.fill(self._fd, want)
                if n:
                    proto.spliced(n)
                    return
                data = b""
            elif want < 0:
                return
            else:
                data = self._sock.recv(proto.read_size)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._fatal(exc)
            return
        if not data:
            self.pause_reading()
            if not proto.eof_received():
                self.close()
            return
        proto.data_received(data)

    def pause_reading(self) -> None:
        if self._reading:
            self._reading = False
            self._loop.remove_reader(self._fd)

    def resume_reading(self) -> None:
        if not self._reading and not self._closing:
            self._reading = True
            self._loop.add_reader(self._fd, self._on_readable)

    def is_reading(self) -> bool:
        return self._reading

    # -- writing -----------------------------------------------------------------------------

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.writelines([data])

    def writelines(self, list_of_data: Any) -> None:
        if self._closing:
            return
        bufs = [memoryview(b).cast("B") for b in list_of_data if len(b)]
        if not bufs:
            return
        if not self._buffer:
            try:
                sent = self._sock.sendmsg(bufs[:_IOV_MAX])
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError as exc:
                self._fatal(exc)
                return
            bufs = _skip(bufs, sent)
            if not bufs:
                return
            self._loop.add_writer(self._fd, self._on_writable)
        self._buffer.extend(bufs)
        self._buffered += sum(len(b) for b in bufs)
        if not self._protocol_paused and self._buffered > self._high:
            self._protocol_paused = True
            self._protocol.pause_writing()

    def _on_writable(self) -> None:
        buf = self._buffer
        try:
            sent = self._sock.sendmsg([buf[i] for i in range(min(len(buf), _IOV_MAX))])
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._fatal(exc)
            return
        self._buffered -= sent
        while sent:
            first = buf[0]
            if len(first) <= sent:
                buf.popleft()
                sent -= len(first)
            else:
                buf[0] = first[sent:]
                sent = 0
        if not buf:
            self._loop.remove_writer(self._fd)
            if self._closing:
                self._finish(None)
                return
        if self._protocol_paused and self._buffered <= self._low:
            self._protocol_paused = False
            self._protocol.resume_writing()

    def get_write_buffer_size(self) -> int:
        return self._buffered

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self._high = 64 * 1024 if high is None else high
        self._low = self._high // 4 if low is None else low

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return self._low, self._high

    # -- closing -------------------------------------------------------------------------------

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        """Stop reading; close once what was written is sent."""
        if self._closing:
            return
        self._closing = True
        self.pause_reading()
        if not self._buffer:
            self._loop.call_soon(self._finish, None)

    def abort(self) -> None:
        self._force(None)

    def _fatal(self, exc: OSError) -> None:
        if exc.errno not in _GONE:
            log.warning("driver connection failed: %s", exc)
        self._force(exc)

    def _force(self, exc: Exception | None) -> None:
        if self._closed:
            return
        self._closing = True
        self.pause_reading()
        if self._buffer:
            self._buffer.clear()
            self._buffered = 0
            self._loop.remove_writer(self._fd)
        self._loop.call_soon(self._finish, exc)

    def _finish(self, exc: Exception | None) -> None:
        if self._closed:
            return
        self._closed = True
        self.pause_reading()
        self._loop.remove_writer(self._fd)
        self._sock.close()
        self._protocol.connection_lost(exc)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._extra.get(name, default)


def _peername(sock: socket.socket) -> Any:
    try:
        return sock.getpeername()
    except OSError:  # pragma: no cover - reset before we asked
        return None


def _skip(bufs: list[memoryview], n: int) -> list[memoryview]:
    """``bufs`` without their first ``n`` bytes."""
    i = 0
    while i < len(bufs) and n >= len(bufs[i]):
        n -= len(bufs[i])
        i += 1
    rest = bufs[i:]
    if n:
        rest[0] = rest[0][n:]
    return rest


async def open_connection(host: str, port: int, protocol: SpliceSource) -> SocketTransport:
    """Connect a non-blocking TCP socket (TCP_NODELAY) to ``host:port`` and run ``protocol`` on it."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    error: OSError = OSError(f"no address for {host}:{port}")
    for family, type_, proto, _, addr in infos:
        sock = socket.socket(family, type_, proto)
        try:
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            await loop.sock_connect(sock, addr)
        except OSError as exc:
            sock.close()
            error = exc
            continue
        except BaseException:
            sock.close()
            raise
        return SocketTransport(loop, sock, protocol)
    raise error
