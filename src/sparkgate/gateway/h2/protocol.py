"""HTTP/2 without I/O: the frames a connection receives, the frames it sends, and its state.

:class:`H2Protocol` parses what it is given (:meth:`H2Protocol.receive`; DATA payloads are handed
on as memoryviews of the given bytes, as they arrive, without waiting for the rest of the frame),
validates it (a malformed frame ends the connection with GOAWAY and the RFC 9113 error code),
answers PING and SETTINGS, keeps the connection's flow-control windows, and queues what it sends
in order (:meth:`H2Protocol.data_to_send`). Streams (:mod:`.stream`) and their windows are
I/O-free as well; header blocks are HPACK-coded by :mod:`.hpack`.

Reading and writing are the adapter's (:mod:`.connection`, on asyncio), through a few hooks:
:meth:`~H2Protocol._wants_write` (output is queued), :meth:`~H2Protocol._write_now` (large DATA,
written at once), :meth:`~H2Protocol._defer` (``frames_per_turn`` frames were handled: leave the
rest for later) and :meth:`~H2Protocol._ended` (a connection error: close after the GOAWAY).
Without an adapter, the hooks keep everything in memory: tests and fuzz targets drive the
protocol with bytes alone.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from sparkgate.gateway.h2 import frames as f
from sparkgate.gateway.h2.frames import ErrorCode, H2Error
from sparkgate.gateway.h2.hpack import HpackError
from sparkgate.gateway.h2.stream import MAX_FRAME, STREAM_WINDOW, WRITE_HIGH_WATER, Stream

__all__ = ["MAX_FRAME", "STREAM_WINDOW", "WRITE_HIGH_WATER", "H2Protocol", "Stream"]

log = logging.getLogger(__name__)

#: ``(length >> 16, length & 0xFFFF, type, flags, stream id with its reserved bit)`` of a frame header.
unpack_header = f.HEADER.unpack_from
pack_header = f.HEADER.pack
#: The connection window is credited back in steps of this many received bytes.
_CONNECTION_CREDIT_AT = f.MAX_WINDOW // 4

#: DATA of at least this many bytes is written at once instead of at the end of the loop turn.
WRITE_NOW_BYTES = 64 * 1024
#: Frames handled per read before a connection yields the loop (clients: ``gateway.http2.frames_per_turn``).
FRAMES_PER_TURN = 1000
#: Frames other than DATA, HEADERS and CONTINUATION longer than this end a client's connection
#: before they are buffered: the RFC's default SETTINGS_MAX_FRAME_SIZE, which no control frame needs.
MAX_CONTROL_FRAME = f.DEFAULT_MAX_FRAME
#: Entries one SETTINGS frame may carry (nghttp2's default); more → ENHANCE_YOUR_CALM.
MAX_SETTINGS_ENTRIES = 32
#: A header block the driver may send (its error trailers can carry long messages and details).
DRIVER_HEADER_BLOCK = 1024 * 1024


class H2Protocol:
    """One HTTP/2 connection's protocol state, shared by both legs; no I/O."""

    #: Sent by :meth:`open_settings`; subclasses add theirs.
    local_settings: list[tuple[int, int]] = []

    def __init__(self) -> None:
        #: False once the connection ended: nothing more is parsed or written.
        self.live = True
        self.streams: dict[int, Stream] = {}
        #: Streams waiting for window or socket room, in the order they are to be served.
        self.blocked: dict[Stream, None] = {}
        self.peer_initial_window = f.DEFAULT_WINDOW
        self.peer_max_frame = f.DEFAULT_MAX_FRAME
        self.peer_max_streams = 2**31 - 1
        self.send_window = f.DEFAULT_WINDOW
        #: The peer is not taking what we write (its socket buffer is full): DATA waits.
        self.paused = False
        self.closing = False
        self._out: list[Any] = []
        self._recv_credit = 0
        self._partial = bytearray()
        self._data_left = 0
        self._data_stream: Stream | None = None
        self._data_end = 0  # the END_STREAM flag of the DATA frame being received
        self._header_block: bytearray | None = None
        self._header_sid = 0
        self._header_end = False
        # Limits. A client's connection sets its own (:class:`~.downstream.ClientConnection`); the
        # driver's is trusted, and only yields the loop now and then.
        self.frames_per_turn = FRAMES_PER_TURN
        self.max_header_block = DRIVER_HEADER_BLOCK
        self.max_control_frame = f.MAX_FRAME_LIMIT
        #: Frames queued for the peer since it last took what we wrote (0: no limit).
        self.max_queued_frames = 0
        self._queued = 0
        #: Consecutive frames with nothing in them; more than ``max_empty_frames`` (-1: no limit).
        self.max_empty_frames = -1
        self._empty_run = 0
        #: The rest of a received chunk, left for later once ``frames_per_turn`` frames were handled.
        self._backlog: bytes | None = None
        #: When (``time.monotonic()``) the frame in ``_partial`` / the open header block began arriving.
        self._partial_since = 0.0
        self._header_since = 0.0

    # -- the adapter's hooks (without one: everything stays in memory) ---------------------------

    def _wants_write(self) -> None:
        """Output was queued: write it soon (the adapter batches a loop turn's frames)."""

    def _write_now(self) -> None:
        """Write what is queued now (large DATA: the peer starts reading while we go on)."""

    def _defer(self, rest: memoryview) -> None:
        """``frames_per_turn`` frames were handled: the rest of this chunk waits for later (the
        adapter lets other connections go first). Without one, :meth:`receive` goes on."""
        self._backlog = bytes(rest)

    def _ended(self) -> None:
        """A connection error: the GOAWAY saying why is queued; the adapter closes after it."""

    # -- writing ------------------------------------------------------------------------------

    def data_to_send(self) -> list[Any]:
        """What was queued for the peer since the last call (bytes and memoryviews, in order)."""
        out, self._out = self._out, []
        return out

    def send_frame(self, data: bytes) -> None:
        self._out.append(data)
        self._wants_write()
        if self.paused and self.max_queued_frames:
            self._count_queued()

    def _count_queued(self) -> None:
        """A frame was queued while the peer is not taking what we write (the socket's buffer is
        full): one that keeps sending frames that need answers, but does not read the answers,
        stops being served once ``max_queued_frames`` wait for it."""
        self._queued += 1
        if self._queued > self.max_queued_frames and self.live:
            # Not raised: this may run while another connection (a driver's) is being read.
            self.fail(ErrorCode.ENHANCE_YOUR_CALM, f"{self._queued} frames queued for a peer that does not read them")

    def write_headers(self, sid: int, block: bytes, end: bool) -> None:
        if self.paused and self.max_queued_frames:
            self._count_queued()
        mf, size = self.peer_max_frame, len(block)
        if size <= mf:  # HEADERS with END_HEADERS (0x4), and END_STREAM (0x1) if it ends the stream
            self._out += (pack_header(size >> 16, size & 0xFFFF, 1, 5 if end else 4, sid), block)
        else:
            self._out.append(f.frame(f.HEADERS, f.END_STREAM if end else 0, sid, block[:mf]))
            for off in range(mf, size, mf):
                last = off + mf >= size
                self._out.append(f.frame(f.CONTINUATION, f.END_HEADERS if last else 0, sid, block[off : off + mf]))
        self._wants_write()

    def write_data(self, sid: int, payload: memoryview | bytes, n: int, end: bool) -> None:
        """Frame the first ``n`` bytes of ``payload`` (windows already checked)."""
        out, mf = self._out, self.peer_max_frame
        if n <= mf:  # one frame (also an empty one that only ends the stream)
            out.append(pack_header(n >> 16, n & 0xFFFF, 0, 1 if end else 0, sid))
            if n:
                out.append(payload if n == len(payload) else payload[:n])
        else:
            off = 0
            while off < n:
                k = min(mf, n - off)
                out.append(f.frame_header(k, f.DATA, f.END_STREAM if end and off + k == n else 0, sid))
                out.append(payload[off : off + k])
                off += k
        if n >= WRITE_NOW_BYTES:
            self._write_now()
        else:
            self._wants_write()

    def writable(self) -> None:
        """The peer takes what we write again: waiting streams go on."""
        self.paused = False
        self._queued = 0
        self._unblock()

    def _unblock(self) -> None:
        blocked, self.blocked = self.blocked, {}
        served = []
        for stream in blocked:
            if not stream.closed:
                window = stream.send_window
                stream.flush()
                if stream.send_window != window and stream in self.blocked:
                    served.append(stream)
        # Those that sent something and wait again go behind those that could not: when the
        # connection's window is scarce (a driver's, shared by many clients), streams take turns.
        for stream in served:
            del self.blocked[stream]
            self.blocked[stream] = None

    # -- lifecycle -----------------------------------------------------------------------------

    def open_settings(self) -> None:
        self.send_frame(f.settings_frame(self.local_settings))
        self.send_frame(f.window_update_frame(0, f.MAX_WINDOW - f.DEFAULT_WINDOW))

    def lost(self) -> None:
        """The connection is gone: every stream hears it."""
        self.live = False
        self.closing = True
        self._data_stream = None
        streams = list(self.streams.values())
        self.streams.clear()
        self.blocked.clear()
        for stream in streams:
            stream.queue.clear()  # (what waited for this peer would pin read buffers until collected)
            try:
                stream.release()
                stream.connection_lost()
            except Exception:
                log.exception("cleaning up stream %d after a lost connection", stream.id)

    def close_stream(self, stream: Stream) -> None:
        if self.streams.get(stream.id) is stream:
            del self.streams[stream.id]
            self.blocked.pop(stream, None)
            stream.queue.clear()
            if stream.taken or stream.waiting is not None:
                stream.release()
            self.stream_closed(stream)

    def stream_closed(self, stream: Stream | None) -> None:
        """Hook: a stream left the table (draining connections close when the last one does)."""

    def fail(self, code: ErrorCode, message: str, last_stream_id: int = 0) -> None:
        """A connection error: GOAWAY with ``code``, then the connection ends (others are unaffected)."""
        log.warning("%s: HTTP/2 %s: %s", type(self).__name__, code.name, message)
        self._out.append(f.goaway_frame(last_stream_id, code, message.encode()[:256]))
        self._write_now()
        if self.live:
            self.live = False
            self._ended()

    # -- reading -------------------------------------------------------------------------------

    def receive(self, data: bytes | memoryview) -> None:
        """Handle bytes from the peer (a connection error queues GOAWAY and ends the connection)."""
        if not self.live:
            return  # ended (a connection error): what still arrives is dropped
        if self._backlog is not None:  # (only without an adapter: it reads no more meanwhile)
            data, self._backlog = self._backlog + bytes(data), None
        try:
            self._parse(data)
        except H2Error as err:
            self.fail(err.code, err.message, self.last_peer_stream_id())
        except HpackError as err:
            self.fail(ErrorCode.COMPRESSION_ERROR, str(err), self.last_peer_stream_id())
        except Exception:
            log.exception("%s: unexpected error while handling frames", type(self).__name__)
            self.fail(ErrorCode.INTERNAL_ERROR, "internal error", self.last_peer_stream_id())

    def receive_all(self, data: bytes | memoryview) -> None:
        """:meth:`receive`, and what it deferred, at once (no adapter: tests, fuzz targets)."""
        self.receive(data)
        while self._backlog is not None and self.live:
            self.receive(b"")

    def last_peer_stream_id(self) -> int:
        return 0

    def _parse(self, data: bytes | memoryview) -> None:
        mv = data if type(data) is memoryview else memoryview(data)
        off, n = 0, len(data)
        if self._data_left or self._partial:
            off = self._resume(mv)  # the rest of a frame begun in an earlier read
        budget = self.frames_per_turn
        while off < n and self.live:
            if not budget:
                self._defer(mv[off:])
                return
            budget -= 1
            if off + 9 > n:  # f.FRAME_HEADER_LEN
                self._partial = bytearray(mv[off:])
                self._partial_since = time.monotonic()
                return
            hi, lo, type_, flags, sid = unpack_header(data, off)
            off += 9
            # A 24-bit length never exceeds MAX_FRAME (2^24 - 1), the largest frame we allow.
            length = hi << 16 | lo
            if type_ == 0 and not flags & 0x8:  # DATA, not PADDED: hand on what arrived now
                stream = self._start_data(flags, sid & 0x7FFFFFFF, length)
                if length:
                    k = n - off
                    if k < length:  # the rest comes in later reads
                        self._data_left, self._data_stream, self._data_end = length - k, stream, flags & 1
                        if stream is not None and k:
                            stream.received_data(mv[off:], False)
                        return
                    if stream is not None:
                        end = bool(flags & 1)
                        if end:
                            stream._mark_received_end()
                        stream.received_data(mv[off : off + length], end)
                    off += length
                continue
            if length > MAX_CONTROL_FRAME:
                self._check_length(type_, length)
            stop = off + length
            if stop > n:
                self._partial = bytearray(mv[off - 9 :])
                self._partial_since = time.monotonic()
                return
            self._frame(type_, flags, sid & 0x7FFFFFFF, mv[off:stop])
            off = stop

    def _resume(self, mv: memoryview) -> int:
        """Continue the DATA frame or the partial frame an earlier read ended in; the new offset."""
        n = len(mv)
        if self._data_left:
            # Inside a DATA frame: hand on what arrived now, without waiting for the rest.
            k = min(self._data_left, n)
            self._data_left -= k
            end = self._data_left == 0 and bool(self._data_end)
            stream = self._data_stream
            if stream is not None:
                if end:
                    stream._mark_received_end()
                stream.received_data(mv[:k], end)
            return k
        p, off = self._partial, 0
        if len(p) < f.FRAME_HEADER_LEN:
            off = min(f.FRAME_HEADER_LEN - len(p), n)
            p += mv[:off]
            if len(p) < f.FRAME_HEADER_LEN:
                return n
            length, type_, flags, sid = f.parse_frame_header(p)
            if type_ == f.DATA and not flags & f.PADDED:
                self._partial = bytearray()
                stream = self._start_data(flags, sid, length)
                if length:
                    self._data_left, self._data_stream, self._data_end = length, stream, flags & 1
                    return off + self._resume(mv[off:]) if off < n else n
                return off
        length, type_, _, _ = f.parse_frame_header(p)
        if length > MAX_CONTROL_FRAME:
            self._check_length(type_, length)
        need = f.FRAME_HEADER_LEN + length - len(p)
        take = min(need, n - off)
        p += mv[off : off + take]
        off += take
        if take < need:
            return n
        self._partial = bytearray()
        frame = bytes(p)
        _, type_, flags, sid = f.parse_frame_header(frame)
        self._frame(type_, flags, sid, memoryview(frame)[f.FRAME_HEADER_LEN :])
        return off

    def incomplete_since(self) -> float | None:
        """``time.monotonic()`` since which a frame or header block has been arriving (None: none
        is). A DATA frame arriving slowly is not counted: flow control paces DATA."""
        pending = [(self._partial_since, bool(self._partial)), (self._header_since, self._header_block is not None)]
        since = [t for t, what in pending if what]
        return min(since) if since else None

    def _check_length(self, type_: int, length: int) -> None:
        """Refuse a long frame other than DATA before any of it is buffered."""
        if type_ == f.DATA:  # padded DATA takes the buffered path; windows bound it
            return
        if type_ in (f.HEADERS, f.CONTINUATION):
            if length > self.max_header_block:
                raise H2Error(
                    ErrorCode.ENHANCE_YOUR_CALM,
                    f"header frame of {length} bytes; header lists are limited to {self.max_header_block}",
                )
        elif length > self.max_control_frame:
            raise H2Error(ErrorCode.FRAME_SIZE_ERROR, f"frame of type {type_} is {length} bytes long")

    def _empty_frame(self, what: str) -> None:
        self._empty_run += 1
        if self.max_empty_frames >= 0 and self._empty_run > self.max_empty_frames:
            raise H2Error(ErrorCode.ENHANCE_YOUR_CALM, f"{self._empty_run} {what} frames in a row with nothing in them")

    def _start_data(self, flags: int, sid: int, length: int) -> Stream | None:
        """Account for a DATA frame of ``length`` bytes: the stream its payload goes to, if any."""
        if self._header_block is not None:
            raise H2Error(ErrorCode.PROTOCOL_ERROR, "DATA while a header block is open")
        if sid == 0:
            raise H2Error(ErrorCode.PROTOCOL_ERROR, "DATA on stream 0")
        if length:
            self._empty_run = 0
        elif not flags & f.END_STREAM:
            self._empty_frame("DATA")
        self._credit_connection(length)
        stream = self.streams.get(sid)
        if stream is not None:
            if stream.recv_end:
                stream.reset(ErrorCode.STREAM_CLOSED)
                return None
            if not stream.spend(length, flags & 1):
                stream.reset(ErrorCode.FLOW_CONTROL_ERROR)
                return None
            if not length:
                end = bool(flags & f.END_STREAM)
                if end:
                    stream._mark_received_end()
                stream.received_data(b"", end)
        elif sid > self.last_peer_stream_id() and self.is_peer_stream(sid):
            raise H2Error(ErrorCode.PROTOCOL_ERROR, f"DATA on idle stream {sid}")
        return stream

    def is_peer_stream(self, sid: int) -> bool:
        return False

    def _credit_connection(self, n: int) -> None:
        self._recv_credit += n
        if self._recv_credit >= _CONNECTION_CREDIT_AT:
            self.send_frame(f.window_update_frame(0, self._recv_credit))
            self._recv_credit = 0

    def _frame(self, type_: int, flags: int, sid: int, payload: memoryview) -> None:
        if self._header_block is not None and type_ != f.CONTINUATION:
            raise H2Error(ErrorCode.PROTOCOL_ERROR, "header block interrupted by another frame")
        if type_ == f.HEADERS:
            if sid == 0:
                raise H2Error(ErrorCode.PROTOCOL_ERROR, "HEADERS on stream 0")
            body = f.strip_padding(flags, payload) if flags & f.PADDED else payload
            if flags & f.PRIORITY_FLAG:
                body = body[5:]
            if body:
                self._empty_run = 0
            elif not flags & (f.END_STREAM | f.END_HEADERS):
                self._empty_frame("HEADERS")
            if len(body) > self.max_header_block:
                raise H2Error(
                    ErrorCode.ENHANCE_YOUR_CALM,
                    f"header block of {len(body)} bytes; header lists are limited to {self.max_header_block}",
                )
            if flags & f.END_HEADERS:
                self.headers_received(sid, bytes(body), bool(flags & f.END_STREAM))
            else:
                self._header_block, self._header_sid = bytearray(body), sid
                self._header_end = bool(flags & f.END_STREAM)
                self._header_since = time.monotonic()
        elif type_ == f.WINDOW_UPDATE:
            self._window_update(sid, payload)
        elif type_ == f.DATA:  # padded (unpadded DATA never gets here)
            self._credit_connection(len(payload))
            body = f.strip_padding(flags, payload)
            if body or flags & f.END_STREAM:
                self._empty_run = 0
            else:
                self._empty_frame("DATA")
            stream = self.streams.get(sid)
            if stream is not None and not stream.recv_end:
                if not stream.spend(len(payload), flags & f.END_STREAM):
                    stream.reset(ErrorCode.FLOW_CONTROL_ERROR)
                    return
                stream.grant(len(payload) - len(body))
                end = bool(flags & f.END_STREAM)
                if end:
                    stream._mark_received_end()
                stream.received_data(body, end)
        elif type_ == f.CONTINUATION:
            if self._header_block is None or sid != self._header_sid:
                raise H2Error(ErrorCode.PROTOCOL_ERROR, "unexpected CONTINUATION")
            if payload:
                self._empty_run = 0
            elif not flags & f.END_HEADERS:
                self._empty_frame("CONTINUATION")
            self._header_block += payload
            if len(self._header_block) > self.max_header_block:
                raise H2Error(
                    ErrorCode.ENHANCE_YOUR_CALM,
                    f"header block over {self.max_header_block} bytes; header lists are limited to that",
                )
            if flags & f.END_HEADERS:
                block, self._header_block = bytes(self._header_block), None
                self.headers_received(sid, block, self._header_end)
        elif type_ == f.SETTINGS:
            self._settings(flags, sid, payload)
        elif type_ == f.PING:
            if sid != 0:
                raise H2Error(ErrorCode.PROTOCOL_ERROR, "PING on a stream")
            if len(payload) != 8:
                raise H2Error(ErrorCode.FRAME_SIZE_ERROR, "PING payload is not 8 bytes")
            if not flags & f.ACK:
                self.send_frame(f.frame(f.PING, f.ACK, 0, bytes(payload)))
        elif type_ == f.RST_STREAM:
            if sid == 0 or len(payload) != 4:
                raise H2Error(ErrorCode.PROTOCOL_ERROR, "malformed RST_STREAM")
            stream = self.streams.get(sid)
            if stream is not None:
                self.close_stream(stream)
                stream.received_reset(int.from_bytes(payload, "big"))
            elif sid > self.last_peer_stream_id() and self.is_peer_stream(sid):
                raise H2Error(ErrorCode.PROTOCOL_ERROR, f"RST_STREAM on idle stream {sid}")
        elif type_ == f.GOAWAY:
            last, code, debug = f.parse_goaway(payload)
            self.goaway_received(last, code, debug)
        elif type_ == f.PUSH_PROMISE:
            raise H2Error(ErrorCode.PROTOCOL_ERROR, "PUSH_PROMISE (push is disabled)")
        elif type_ == f.PRIORITY:
            if sid == 0:
                raise H2Error(ErrorCode.PROTOCOL_ERROR, "PRIORITY on stream 0")
            if len(payload) != 5:
                raise H2Error(ErrorCode.FRAME_SIZE_ERROR, "PRIORITY payload is not 5 bytes")
            self.priority_received()
        # Other PRIORITY handling and unknown frame types: ignored (§5.3.2, §5.5).

    def _window_update(self, sid: int, payload: memoryview) -> None:
        if len(payload) != 4:
            raise H2Error(ErrorCode.FRAME_SIZE_ERROR, "WINDOW_UPDATE payload is not 4 bytes")
        inc = int.from_bytes(payload, "big") & 0x7FFFFFFF
        if sid == 0:
            if inc == 0:
                raise H2Error(ErrorCode.PROTOCOL_ERROR, "WINDOW_UPDATE of 0")
            self.send_window += inc
            if self.send_window > f.MAX_WINDOW:
                raise H2Error(ErrorCode.FLOW_CONTROL_ERROR, "connection window above 2^31-1")
            if self.blocked:
                self._unblock()
            return
        stream = self.streams.get(sid)
        if stream is None:
            return
        if inc == 0:
            stream.reset(ErrorCode.PROTOCOL_ERROR)
            return
        stream.send_window += inc
        if stream.send_window > f.MAX_WINDOW:
            stream.reset(ErrorCode.FLOW_CONTROL_ERROR)
            return
        if stream in self.blocked:
            del self.blocked[stream]
            stream.flush()

    def _settings(self, flags: int, sid: int, payload: memoryview) -> None:
        if sid != 0:
            raise H2Error(ErrorCode.PROTOCOL_ERROR, "SETTINGS on a stream")
        if flags & f.ACK:
            if payload:
                raise H2Error(ErrorCode.FRAME_SIZE_ERROR, "SETTINGS ACK with a payload")
            return
        settings = f.parse_settings(payload)
        if len(settings) > MAX_SETTINGS_ENTRIES:
            raise H2Error(ErrorCode.ENHANCE_YOUR_CALM, f"SETTINGS frame with {len(settings)} entries")
        window = self.peer_initial_window
        for key, value in settings:
            if key == f.SETTINGS_INITIAL_WINDOW_SIZE:
                if value > f.MAX_WINDOW:
                    raise H2Error(ErrorCode.FLOW_CONTROL_ERROR, "SETTINGS_INITIAL_WINDOW_SIZE above 2^31-1")
                window = value
            elif key == f.SETTINGS_MAX_FRAME_SIZE:
                if not f.DEFAULT_MAX_FRAME <= value <= f.MAX_FRAME_LIMIT:
                    raise H2Error(ErrorCode.PROTOCOL_ERROR, f"SETTINGS_MAX_FRAME_SIZE {value} out of range")
                self.peer_max_frame = value
            elif key == f.SETTINGS_MAX_CONCURRENT_STREAMS:
                self.peer_max_streams = value
            elif key == f.SETTINGS_ENABLE_PUSH and value > 1:
                raise H2Error(ErrorCode.PROTOCOL_ERROR, "SETTINGS_ENABLE_PUSH must be 0 or 1")
        # Only the frame's last initial window counts: the streams are walked once per frame, and
        # not at all when it did not change.
        delta = window - self.peer_initial_window
        if delta:
            self.peer_initial_window = window
            for stream in self.streams.values():
                stream.send_window += delta
        self.send_frame(f.frame(f.SETTINGS, f.ACK, 0))
        if delta > 0 and self.blocked:
            self._unblock()  # streams waiting for window may go on

    # -- hooks -----------------------------------------------------------------------------------

    def priority_received(self) -> None:
        """Hook: a PRIORITY frame arrived (priorities are not used; a client's are counted)."""

    def headers_received(self, sid: int, block: bytes, end: bool) -> None:
        raise NotImplementedError

    def goaway_received(self, last_stream_id: int, code: int, debug: bytes) -> None:
        raise NotImplementedError
