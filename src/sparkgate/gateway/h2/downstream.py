"""The client-facing leg: the server side of one HTTP/2 connection from a Spark Connect client.

Per new stream: decode the request HEADERS (the connection's HPACK state must follow every block,
even of streams we refuse), then hold DATA until the first gRPC message is complete — the router
needs its session id, user id and, for Config, its Set pairs. While held, the bytes are credited
to the client at once (a first message may be far larger than a stream window); the 5-byte gRPC
prefix is checked as soon as it arrives (compressed → UNIMPLEMENTED, too large →
RESOURCE_EXHAUSTED), so nothing oversized is ever buffered. Then :class:`Router` (the relay) opens
the driver stream and attaches it: held bytes go first, later frames flow straight through.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time
import urllib.parse
from collections.abc import Awaitable, Callable
from typing import NamedTuple, Protocol

from sparkgate.config import Http2Limits
from sparkgate.gateway.affinity import Route, SessionKey
from sparkgate.gateway.h2 import frames as f
from sparkgate.gateway.h2.budget import INITIAL_WINDOW, ByteBudget, SharedBudgets, WindowBudget
from sparkgate.gateway.h2.connection import MAX_CONTROL_FRAME, MAX_FRAME, Connection, Stream
from sparkgate.gateway.h2.frames import ErrorCode, H2Error
from sparkgate.gateway.h2.hpack import RESPONSE_HEADERS_200, Decoder, Header, encode_headers
from sparkgate.gateway.h2.upstream import DriverStream, grpc_status
from sparkgate.security.tls import peer_subject_from_ssl

log = logging.getLogger(__name__)

_MESSAGE_PREFIX = 5
#: Ranges of skipped stream ids kept per connection (clients do not skip ids; a bound all the same).
_SKIPPED_KEPT = 64
#: First messages up to this size are held without reserving room (nearly every call's is small).
_HOLD_FREELY = 64 * 1024
#: Request heads kept per connection, and the largest header block kept (bytes).
_HEAD_CACHE_MAX = 64
_HEAD_CACHE_MAX_LEN = 2048

# Request headers not forwarded to drivers: transport-level, or credentials meant for the gateway only.
DROP_HEADERS = frozenset({"user-agent", "authorization", "te", "content-type", "grpc-accept-encoding"})

# gRPC status codes used here (grpc.StatusCode values, kept as ints on the hot path).
UNKNOWN, INVALID_ARGUMENT, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED = 2, 3, 4, 8
FAILED_PRECONDITION, UNIMPLEMENTED, INTERNAL, UNAVAILABLE = 9, 12, 13, 14


#: Runs once the driver's response ended, before its trailers reach the client:
#: ``(grpc-status or None if the stream failed, the response message)``.
AfterAnswer = Callable[[int | None, bytes], Awaitable[None]]


class Router(Protocol):
    """What the client leg asks once a stream's first message is complete."""

    max_message_bytes: int

    def known_path(self, path: str) -> bool: ...
    def route(self, stream: ClientStream) -> None: ...
    def finish(self, stream: ClientStream, block: bytes, headers: list[Header] | None) -> None: ...
    def call_done(self, stream: ClientStream) -> None: ...
    def connection_closed(self, conn: ClientConnection, *, by_client: bool) -> None: ...


def status_block(code: int, message: str = "", metadata: tuple[tuple[str, str | bytes], ...] = ()) -> bytes:
    """A trailers block: ``grpc-status``, percent-encoded ``grpc-message`` and extra metadata."""
    headers: list[tuple[str, str | bytes]] = [("grpc-status", str(code))]
    if message:
        # gRPC over HTTP/2: percent-encode everything outside printable ASCII, and '%' itself.
        headers.append(("grpc-message", urllib.parse.quote(message, safe=_PCT_SAFE)))
    for key, value in metadata:
        if key.endswith("-bin"):
            raw = value if isinstance(value, bytes) else value.encode()
            headers.append((key, base64.b64encode(raw).rstrip(b"=")))
        else:
            headers.append((key, value))
    return encode_headers(headers)


_PCT_SAFE = "".join(chr(c) for c in range(0x20, 0x7F) if chr(c) != "%")


#: Connection-specific header fields, which make an HTTP/2 request malformed (RFC 9113 §8.2.2).
CONNECTION_HEADERS = frozenset({"connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade"})
_REQUEST_PSEUDO = frozenset({":method", ":scheme", ":authority", ":path"})
#: Characters no field name may contain: controls, space, upper case, DEL and non-ASCII (§8.2.1).
_BAD_NAME = frozenset(chr(c) for c in (*range(0x00, 0x21), *range(0x41, 0x5B), *range(0x7F, 0x100)))


def malformed(headers: list[Header]) -> str | None:
    """Why a request's header list makes it malformed (RFC 9113 §8.1.1, §8.2, §8.3.1), if it does."""
    seen: set[str] = set()
    regular = False
    for name, value in headers:
        if not name:
            return "an empty field name"
        if name[0] == ":":
            if regular:
                return f"pseudo-header {name} after regular fields"
            if name not in _REQUEST_PSEUDO:
                return f"pseudo-header {name} is not one of a request's"
            if name in seen:
                return f"pseudo-header {name} appears twice"
            seen.add(name)
            if not value and name != ":authority":
                return f"pseudo-header {name} is empty"
        else:
            regular = True
            if not name.isascii() or not _BAD_NAME.isdisjoint(name):
                return f"field name {name!r} has upper-case, control or non-ASCII characters"
            if name in CONNECTION_HEADERS:
                return f"connection-specific field {name}"
            if name == "te" and value != "trailers":
                return f"te: {value!r} (only 'trailers' is allowed)"
            if name == "content-length" and not (value.isascii() and value.isdigit()):
                return f"content-length {value!r} is not a number"
        if "\0" in value or "\r" in value or "\n" in value:
            return f"field {name} has NUL, CR or LF in its value"
    missing = sorted({":method", ":scheme", ":path"} - seen)
    if missing:
        return f"pseudo-header{'s' if len(missing) > 1 else ''} {', '.join(missing)} missing"
    return None


def spaced(headers: list[Header]) -> str | None:
    """A field whose value starts or ends with white space (RFC 9113 §8.2.1 forbids it): a client's
    mistake, often a value pasted into a connection string, answered with a message."""
    for name, value in headers:
        if value[:1] in (" ", "\t") or value[-1:] in (" ", "\t"):
            return name
    return None


_TIMEOUT_UNITS = {"H": 3600.0, "M": 60.0, "S": 1.0, "m": 1e-3, "u": 1e-6, "n": 1e-9}


def grpc_timeout(metadata: tuple[Header, ...]) -> float | None:
    """The call's deadline in seconds from its ``grpc-timeout`` header (gRPC over HTTP/2: up to 8
    digits and a unit), or None if it has none or it is not valid."""
    for key, value in metadata:
        if key == "grpc-timeout":
            unit = _TIMEOUT_UNITS.get(value[-1:])
            digits = value[:-1]
            if unit is None or not (digits.isascii() and digits.isdigit()) or len(digits) > 8:
                return None
            return int(digits) * unit
    return None


class RequestHead(NamedTuple):
    """What a request's header block says, as the relay needs it (the same for every call of a kind)."""

    path: str
    method: str
    #: Every non-pseudo request header, for the router (like grpc's invocation metadata).
    metadata: tuple[Header, ...]
    #: What the driver gets: without transport headers and the client's credentials.
    upstream_metadata: tuple[Header, ...]
    #: ``(gRPC status, message)`` the stream is answered with at once, if it cannot be relayed.
    problem: tuple[int, str] | None
    #: Why the request is malformed, if it is: it is reset with PROTOCOL_ERROR, never relayed.
    malformed: str | None = None
    #: The request's ``content-length`` (-1: none): its DATA must add up to exactly that (§8.1.1).
    content_length: int = -1


def request_head(headers: list[Header], router: Router) -> RequestHead:
    path = content_type = http_method = ""
    content_length = -1
    md: list[Header] = []
    for k, v in headers:
        if k == ":path":
            path = v
        elif k == ":method":
            http_method = v
        elif k[:1] != ":":
            md.append((k, v))
            if k == "content-type":
                content_type = v
            elif k == "content-length" and v.isascii() and v.isdigit():
                if content_length >= 0 and int(v) != content_length:
                    return RequestHead(path, "", (), (), None, "two different content-length fields")
                content_length = int(v)
    method = path.rpartition("/")[2]
    problem: tuple[int, str] | None = None
    why = malformed(headers)
    if why is not None:
        return RequestHead(path, method, (), (), None, why)
    field = spaced(headers)
    if field is not None:
        problem = INVALID_ARGUMENT, f"request field {field} has white space around its value; remove it"
    elif http_method != "POST":
        problem = UNIMPLEMENTED, f"HTTP method {http_method}: gRPC calls are POST requests"
    elif not content_type.startswith("application/grpc"):
        problem = UNKNOWN, f"content-type {content_type!r} is not gRPC; sparkgate speaks gRPC (Spark Connect)"
    elif not router.known_path(path):
        problem = UNIMPLEMENTED, f"unknown method {path}"
    upstream = tuple((k, v) for k, v in md if k not in DROP_HEADERS)
    return RequestHead(path, method, tuple(md), upstream, problem, None, content_length)


class ClientStream(Stream):
    __slots__ = (
        "after",
        "collected",
        "content_left",
        "held",
        "held_len",
        "kept",
        "message_len",
        "metadata",
        "method",
        "path",
        "reason",
        "reserved",
        "reset_after_end",
        "response_started",
        "retry",
        "route",
        "routing",
        "started",
        "status",
        "upstream_metadata",
    )

    def __init__(self, conn: ClientConnection, stream_id: int) -> None:
        super().__init__(conn, stream_id)
        self.path = ""
        self.method = ""
        #: Every non-pseudo request header, for the router (like grpc's invocation metadata).
        self.metadata: tuple[Header, ...] = ()
        #: What the driver gets: without transport headers and the client's credentials.
        self.upstream_metadata: tuple[Header, ...] = ()
        self.held: list[memoryview | bytes] = []
        self.held_len = 0
        self.message_len = -1
        #: Bytes of DATA the request's content-length still promises (-1: it has none).
        self.content_left = -1
        self.routing = False
        self.response_started = False
        #: What must run before the trailers go out (:meth:`run_after_answer`).
        self.after: AfterAnswer | None = None
        #: Response bytes kept for an after-answer action that reads the response (CloneSession).
        self.collected: bytearray | None = None
        #: The whole request, kept while the call may still go to another driver (:meth:`keep_for_failover`).
        self.kept: list[memoryview | bytes] | None = None
        self.reset_after_end: int | None = None
        #: For telemetry: when the request began, the session's route once placed, the final status.
        #: Bytes of the held-message budget this stream reserved (:meth:`ClientConnection.reserve`).
        self.reserved = 0
        self.started = time.monotonic()
        self.route: Route | None = None
        self.status: int | None = None
        self.reason = ""
        #: On a new session's first call: ``retry(why)`` sends the request to another driver if this
        #: one fails before answering (False: it may not, fail as usual).
        self.retry: Callable[[str], bool] | None = None
        if isinstance(conn, ClientConnection):
            self.budget = conn.budget

    @property
    def router(self) -> Router:
        assert isinstance(self.conn, ClientConnection)
        return self.conn.router

    # -- the request --------------------------------------------------------------------------

    def start(self, head: RequestHead, end: bool) -> None:
        self.path, self.method = head.path, head.method
        self.metadata, self.upstream_metadata = head.metadata, head.upstream_metadata
        self.content_left = head.content_length
        if head.malformed is not None:
            self.reset_malformed(head.malformed)
        elif end and head.content_length > 0:
            self.reset_malformed(f"content-length is {head.content_length} and the request has no DATA")
        elif head.problem is not None:
            self.fail(*head.problem)
        elif end:
            self.fail(INVALID_ARGUMENT, f"{self.method}: the request has no message")

    def received_headers(self, block: bytes, end: bool) -> None:
        # Request trailers (gRPC clients send none): only their END_STREAM matters.
        if end:
            self.received_data(b"", True)

    def reset_malformed(self, why: str) -> None:
        """A malformed request (RFC 9113 §8.1.1): reset with PROTOCOL_ERROR, its driver's call cancelled."""
        log.info("stream %s: malformed request (%s): reset", self.id, why)
        self.reset(ErrorCode.PROTOCOL_ERROR)
        self._cancel_partner()

    def received_data(self, payload: memoryview | bytes, end: bool) -> None:
        if self.content_left >= 0:
            left = self.content_left = self.content_left - len(payload)
            if left < 0 or (end and left):
                more = "more" if left < 0 else "less"
                self.reset_malformed(f"its DATA does not add up to its content-length ({more})")
                return
        partner = self.partner
        if partner is not None:
            partner.send_data(payload, end)
            return
        if self.sent_end:
            return  # already answered (an error); the reset that followed stops the client
        n = len(payload)
        # While the route is decided (which may take a driver's start), what arrives is copied:
        # a view would pin its read buffer all that time.
        self.held.append(bytes(payload) if self.routing else payload)
        self.held_len += n
        if self.routing:
            return  # more messages of a client stream: flow control holds them until attached
        self.precredited += n
        self.credit += n
        if self.credit >= self.window >> 2:
            self.grant(self.credit)
            self.credit = 0
        if self.message_len < 0 and self.held_len >= _MESSAGE_PREFIX:
            prefix = self._first_bytes(_MESSAGE_PREFIX)
            if prefix[0] & 1:
                self.fail(
                    UNIMPLEMENTED,
                    f"{self.method}: compressed requests are not supported by sparkgate (grpc-encoding "
                    "is set on the first message); Spark Connect clients do not compress, turn compression off",
                )
                return
            self.message_len = int.from_bytes(prefix[1:5], "big")
            limit = self.router.max_message_bytes
            if self.message_len > limit:
                self.fail(
                    RESOURCE_EXHAUSTED,
                    f"{self.method}: request message of {self.message_len} bytes is larger than the gateway's "
                    f"limit of {limit} bytes (gateway.max_message_bytes)",
                )
                return
            conn = self.conn
            if self.message_len > _HOLD_FREELY and isinstance(conn, ClientConnection):
                full = conn.reserve(self, self.message_len)
                if full is not None:
                    self.fail(RESOURCE_EXHAUSTED, f"{self.method}: {full}; retry when calls in flight are done")
                    return
                self.grow()  # a large message is coming: a window to match, if the budget has room
        if (self.message_len >= 0 and self.held_len >= _MESSAGE_PREFIX + self.message_len) or end:
            self.routing = True
            self.router.route(self)

    def _first_bytes(self, n: int) -> bytes:
        first = self.held[0]
        if len(first) >= n:
            return bytes(first[:n])
        return b"".join(bytes(h) for h in self.held)[:n]

    def first_message(self) -> bytes | None:
        """The complete first gRPC message (without its prefix), or None if the stream ended early."""
        if self.message_len < 0 or self.held_len < _MESSAGE_PREFIX + self.message_len:
            return None
        buf = self.held[0] if len(self.held) == 1 else b"".join(bytes(h) for h in self.held)
        return bytes(buf[_MESSAGE_PREFIX : _MESSAGE_PREFIX + self.message_len])

    def keep_held(self) -> None:
        """Copy what is held out of the read buffers: routing has to wait (for a driver, say)."""
        self.held = [h if type(h) is bytes else bytes(h) for h in self.held]

    def replace_first_message(self, message: bytes) -> None:
        """Send ``message`` instead of the first request message (held, not yet attached)."""
        first = _MESSAGE_PREFIX + self.message_len
        held = b"".join(bytes(h) for h in self.held)
        new = b"\x00" + len(message).to_bytes(4, "big") + message
        self.held = [new + held[first:]] if len(held) > first else [new]
        # The client was credited for what it sent; what we send instead is credited as written.
        self.precredited += len(new) - first
        self.held_len += len(new) - first
        self.message_len = len(message)

    @property
    def peer(self) -> str | None:
        """The verified mTLS client certificate's subject (CN), if the client presented one."""
        conn = self.conn
        return conn.peer if isinstance(conn, ClientConnection) else None

    def goes_to(self, route: Route) -> tuple[bool, bool]:
        """The call goes to ``route``'s driver: whether this is the call's first route (not a new
        session's failover), and whether its connection carries that session for the first time."""
        first_call, self.route = self.route is None, route
        conn = self.conn
        if not isinstance(conn, ClientConnection) or route.key in conn.sessions:
            return first_call, False
        conn.sessions.add(route.key)
        return first_call, True

    def run_after_answer(self, action: AfterAnswer, *, keep_response: bool) -> None:
        """Run ``action`` when the driver's response ends, before its trailers reach the client
        (with the response message if ``keep_response``)."""
        self.after = action
        self.collected = bytearray() if keep_response else None

    def take_after_answer(self) -> tuple[AfterAnswer, bytes] | None:
        """The after-answer action (once), with the response message it reads."""
        after, self.after = self.after, None
        if after is None:
            return None
        kept, self.collected = self.collected or b"", None
        size = int.from_bytes(kept[1:5], "big")
        return after, bytes(kept[_MESSAGE_PREFIX : _MESSAGE_PREFIX + size]) if len(kept) >= _MESSAGE_PREFIX else b""

    def keep_for_failover(self, retry: Callable[[str], bool]) -> None:
        """Keep the whole request until the driver answers: if it fails before answering,
        ``retry(why)`` may send it to another driver (after :meth:`rewind`)."""
        self.keep_held()  # views would pin read buffers until the driver answers
        self.kept = list(self.held)
        self.retry = retry

    def rewind(self) -> bool:
        """Undo the attach to a driver that failed before answering: the driver's stream is
        cancelled and the kept request held again. False if too late (answered, or closed)."""
        if self.closed or self.response_started or self.kept is None:
            return False
        partner, self.partner = self.partner, None
        if partner is not None:
            partner.partner = None
            if not partner.closed:
                partner.reset(ErrorCode.CANCEL)
        self.held = list(self.kept)
        self.held_len = sum(len(h) for h in self.held)
        self.after = self.collected = None
        return True

    def attach(self, driver_stream: DriverStream) -> None:
        """Connect to the driver's stream: held bytes first, then straight through."""
        self.partner = driver_stream
        driver_stream.partner = self
        driver_stream.budget = self.budget  # the driver's response takes from this client's budget
        conn = self.conn
        if isinstance(conn, ClientConnection):
            conn.relayed += 1
            if self.reserved:
                conn.release(self)
        held, self.held = self.held, []
        if not held and self.recv_end:
            driver_stream.send_data(b"", True)
        for i, chunk in enumerate(held):
            driver_stream.send_data(chunk, self.recv_end and i == len(held) - 1)

    def received_reset(self, code: int) -> None:
        """The client cancelled: cancel the driver's stream too."""
        self._cancel_partner()
        conn = self.conn
        if isinstance(conn, ClientConnection):
            conn.reset_by_client(self)

    def connection_lost(self) -> None:
        self.held = []  # (views of read buffers)
        self._cancel_partner()
        self.router.call_done(self)
        conn = self.conn
        if self.reserved and isinstance(conn, ClientConnection):
            conn.release(self)

    def _cancel_partner(self) -> None:
        partner = self.partner
        if partner is not None and not partner.closed:
            partner.reset(ErrorCode.CANCEL)

    # -- the response --------------------------------------------------------------------------

    def response_headers(self, block: bytes, headers: list[Header], end: bool) -> None:
        retry, self.retry = self.retry, None  # the driver answered: no failover after this
        if end:
            status = grpc_status(headers)
            if retry is not None and status == UNAVAILABLE and retry("driver answered UNAVAILABLE"):
                return
            self.status = status
            if status:
                self.reason = urllib.parse.unquote(next((v for k, v in headers if k == "grpc-message"), ""))
        self.kept = None
        if end and self.after is not None:
            self.router.finish(self, block, headers)  # sends the block after the after-answer action
            return
        self.response_started = True
        self.send_headers(block, end)

    def response_data(self, payload: memoryview | bytes, end: bool) -> None:
        if self.collected is not None:
            self.collected += payload
        self.send_data(payload, end)

    def response_failed(self, reset_code: int | None, why: str) -> None:
        retry, self.retry = self.retry, None
        if retry is not None and retry(why):
            return
        self.kept = None
        if self.after is not None:
            self.router.finish(self, b"", None)
        if self.closed or self.sent_end:
            return
        if reset_code is not None and not self.queue:
            self.reset(reset_code)
            return
        self.fail(UNAVAILABLE, f"{why}; retry the call")

    def answer(self, message: bytes) -> None:
        """Respond with a message and status OK (the gateway answers by itself)."""
        self.response_started = True
        self.status = 0
        self.send_headers(RESPONSE_HEADERS_200, False)
        self.send_data(b"\x00" + len(message).to_bytes(4, "big") + message, False)
        self.send_trailers(status_block(0))

    def end_with_driver_answer(self, status: int, blocks: list[bytes]) -> None:
        """End the stream with a driver's own response header blocks (an error it answered)."""
        if self.sent_end or self.closed:
            return
        self.status = status
        if len(blocks) == 1:  # trailers-only: the block carries :status itself
            self.response_started = True
            self.send_trailers(blocks[0])
            return
        self.response_started = True
        self.send_headers(blocks[0], False)
        self.send_trailers(blocks[-1])

    def send_final_block(self, block: bytes) -> None:
        """Send the driver's final header block, held while an after-answer action ran."""
        if not self.closed and not self.sent_end:
            self.response_started = True
            self.send_headers(block, True)

    def fail(self, code: int, message: str, metadata: tuple[tuple[str, str | bytes], ...] = ()) -> None:
        """End the stream with a gRPC error (trailers-only if no response was started)."""
        if self.sent_end or self.closed:
            return
        self.status, self.reason = code, message
        if code != UNAVAILABLE:
            log.info("stream %s %s: status %d: %s", self.id, self.method, code, message)
        self.send_trailers(status_block(code, message, metadata))

    def send_trailers(self, block: bytes) -> None:
        if not self.response_started:
            block = RESPONSE_HEADERS_200 + block
            self.response_started = True
        if not self.recv_end:
            # The client may still be sending: after our END_STREAM, RST_STREAM(NO_ERROR) stops it.
            self.reset_after_end = ErrorCode.NO_ERROR
        self.send_headers(block, True)

    def _mark_sent_end(self) -> None:
        super()._mark_sent_end()
        code = self.reset_after_end
        if code is not None and not self.recv_end and not self.closed:
            self.conn.send_frame(f.rst_stream_frame(self.id, code))
            self.conn.close_stream(self)
            self._cancel_partner()


class ClientConnection(Connection):
    """A client's connection, held to ``gateway.http2`` (:class:`~sparkgate.config.Http2Limits`)."""

    lingers = True

    def __init__(
        self,
        router: Router,
        limits: Http2Limits | None = None,
        registry: set[ClientConnection] | None = None,
        budgets: SharedBudgets | None = None,
    ) -> None:
        super().__init__()
        self.router = router
        #: The engine's open connections: this one is in it from connection_made to connection_lost.
        self.registry = registry
        self.opened_at = self.idle_since = time.monotonic()
        #: Set by the engine when it has max_connections already: answered with GOAWAY and closed.
        self.refuse: str | None = None
        #: Set by the engine for a cleartext connection to its TLS port: every call fails with this.
        self.tls_required: str | None = None
        self.limits = limits = limits or Http2Limits()
        self.local_settings = [
            (f.SETTINGS_MAX_CONCURRENT_STREAMS, limits.max_concurrent_streams),
            (f.SETTINGS_INITIAL_WINDOW_SIZE, INITIAL_WINDOW),
            (f.SETTINGS_MAX_FRAME_SIZE, MAX_FRAME),
            (f.SETTINGS_MAX_HEADER_LIST_SIZE, limits.max_header_list_bytes),
        ]
        self.frames_per_turn = limits.frames_per_turn
        self.max_header_block = limits.max_header_list_bytes
        self.max_control_frame = MAX_CONTROL_FRAME
        self.max_queued_frames = limits.max_queued_control_frames
        self.max_empty_frames = limits.max_consecutive_empty_frames
        self.decoder = Decoder(max_header_list_size=limits.max_header_list_bytes)
        #: Streams opened in this connection's life, in the read being handled, and reset by the
        #: client soon after opening; PRIORITY frames received.
        self._opened = 0
        self._opened_this_read = 0
        self._premature_resets = 0
        self._priority_frames = 0
        #: First-message bytes this connection's streams may hold (:meth:`reserve`); what all
        #: connections of the engine share; stream windows this connection's calls may take.
        self.held = ByteBudget(limits.max_held_bytes_per_connection)
        self.budgets = budgets = budgets or SharedBudgets(limits)
        self.budget = WindowBudget(limits.relay_window_bytes_per_connection, budgets.windows)
        #: Streams relayed to a driver, and those of them reset by the client soon after opening.
        self.relayed = 0
        self._relayed_resets = 0
        #: Request heads by header block, for the decoder's table version ``_heads_version``.
        self._heads: dict[bytes, RequestHead] = {}
        self._heads_version = -1
        self._preface_left = len(f.PREFACE)
        self._last_stream_id = 0
        #: Ranges of stream ids the client skipped (never opened), the last _SKIPPED_KEPT of them.
        self._skipped: list[tuple[int, int]] = []
        #: Set after we sent GOAWAY (graceful stop): no new streams, close when the last one ends.
        self.draining = False
        #: Subject (CN) of the client certificate verified in the TLS handshake (mTLS), if any.
        self.peer: str | None = None
        #: The sessions whose calls this connection carried.
        self.sessions: set[SessionKey] = set()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.peer = peer_subject_from_ssl(transport.get_extra_info("ssl_object"))
        self.open_settings()
        if self.registry is not None:
            self.registry.add(self)  # refused ones too: they hold a socket while they linger
        if self.refuse is not None:
            self.fail(ErrorCode.ENHANCE_YOUR_CALM, self.refuse)

    def connection_lost(self, exc: Exception | None) -> None:
        # Closed by the client (EOF or reset; after its GOAWAY too) unless the gateway had started
        # closing it: a GOAWAY of ours (idle, reclaimed, stopping) or a connection error it sent.
        by_client = self.transport is not None and not self.draining
        if self.registry is not None:
            self.registry.discard(self)
        super().connection_lost(exc)
        if self.sessions:
            self.router.connection_closed(self, by_client=by_client)

    def take_sessions(self) -> set[SessionKey]:
        """The sessions this connection carried (forgotten here: reported once)."""
        sessions, self.sessions = self.sessions, set()
        return sessions

    def check_timeouts(self, now: float) -> None:
        """Called about once a second by the engine: end what has waited too long."""
        if self.transport is None:
            return
        limits = self.limits
        if self._preface_left:
            if now - self.opened_at > limits.handshake_timeout_seconds:
                log.info("client sent no HTTP/2 preface within %gs; closing", limits.handshake_timeout_seconds)
                self.transport.abort()
            return
        since = self.incomplete_since()
        if since is not None and now - since > limits.request_headers_timeout_seconds:
            self.fail(
                ErrorCode.ENHANCE_YOUR_CALM,
                f"a frame or header block took more than {limits.request_headers_timeout_seconds:g}s to arrive",
                self._last_stream_id,
            )
            return
        if not self.streams:
            if now - self.idle_since > limits.idle_timeout_seconds:
                self.drain()  # GOAWAY NO_ERROR; the client reconnects when it next calls
            return
        late = now - limits.first_message_timeout_seconds
        for stream in list(self.streams.values()):  # in the order they were opened: oldest first
            if not isinstance(stream, ClientStream) or stream.started >= late:
                break  # the rest are younger
            if stream.partner is None and not stream.routing and not stream.sent_end:
                stream.fail(
                    DEADLINE_EXCEEDED,
                    f"{stream.method}: the request's first message did not arrive within "
                    f"{limits.first_message_timeout_seconds:g}s",
                )

    def data_received(self, data: bytes | memoryview) -> None:
        self._opened_this_read = 0
        if self._preface_left and self.transport is not None:
            k = min(self._preface_left, len(data))
            start = len(f.PREFACE) - self._preface_left
            if data[:k] != f.PREFACE[start : start + k]:
                log.info("client did not start with the HTTP/2 preface; closing (plain HTTP/1 or TLS?)")
                if self.transport is not None:
                    self.transport.close()
                return
            self._preface_left -= k
            data = data[k:]
            if not data:
                return
        super().data_received(data)

    def last_peer_stream_id(self) -> int:
        return self._last_stream_id

    def is_peer_stream(self, sid: int) -> bool:
        return sid % 2 == 1

    def headers_received(self, sid: int, block: bytes, end: bool) -> None:
        stream = self.streams.get(sid)
        if stream is not None:
            self.decoder.decode(block)  # always: the dynamic table must see every block
            if end:
                stream._mark_received_end()
            stream.received_headers(block, end)
            return
        head = self._request_head(block)
        if sid % 2 == 0:
            raise H2Error(ErrorCode.PROTOCOL_ERROR, f"client opened even-numbered stream {sid}")
        if sid <= self._last_stream_id:
            if any(lo < sid < hi for lo, hi in self._skipped):
                raise H2Error(ErrorCode.PROTOCOL_ERROR, f"stream {sid} is lower than streams already opened")
            raise H2Error(ErrorCode.STREAM_CLOSED, f"HEADERS on closed stream {sid}")
        if sid > self._last_stream_id + 2:  # ids skipped: idle for ever (RFC 9113 §5.1.1)
            self._skipped.append((self._last_stream_id, sid))
            del self._skipped[:-_SKIPPED_KEPT]
        self._last_stream_id = sid
        limits = self.limits
        self._opened += 1
        self._opened_this_read += 1
        # More at once than advertised, or (as nginx) more new streams in one read than twice that:
        # refused, which clients retry (a flood of them is cut by max_queued_control_frames).
        if (
            self.draining
            or len(self.streams) >= limits.max_concurrent_streams
            or self._opened_this_read > 2 * limits.max_concurrent_streams
        ):
            self.send_frame(f.rst_stream_frame(sid, ErrorCode.REFUSED_STREAM))
            return
        stream = ClientStream(self, sid)
        self.streams[sid] = stream
        if end:
            stream.recv_end = True
        if self.tls_required is not None:
            # Answered, then GOAWAY: a cleartext client of a TLS port gets no further than this.
            stream.path, stream.method = head.path, head.method
            stream.fail(FAILED_PRECONDITION, self.tls_required)
            self.drain()
            return
        stream.start(head, end)
        if self._opened >= limits.max_streams_per_connection:
            log.info("client connection opened %d streams: GOAWAY, new calls go on a new connection", self._opened)
            self.drain()

    def reserve(self, stream: ClientStream, n: int) -> str | None:
        """Hold room for a first message of ``n`` bytes; why not, if it does not fit."""
        held, shared = self.held, self.budgets.held
        if n > held.free:
            return (
                f"this connection's calls already hold {held.used} bytes of first messages; another "
                f"{n} would pass gateway.http2.max_held_bytes_per_connection ({held.limit})"
            )
        if n > shared.free:
            return (
                f"the gateway holds {shared.used} bytes of first messages being routed; another {n} would "
                f"pass gateway.http2.max_held_bytes_total ({shared.limit})"
            )
        stream.reserved = n
        held.used += n
        shared.used += n
        return None

    def release(self, stream: ClientStream) -> None:
        n, stream.reserved = stream.reserved, 0
        self.held.used -= n
        self.budgets.held.used -= n

    def reset_by_client(self, stream: ClientStream) -> None:
        """Rapid reset (CVE-2023-44487): streams reset by the client right after opening cost the
        gateway and the driver work and return nothing; a connection doing mostly that is closed."""
        limits = self.limits
        if stream.sent_end or time.monotonic() - stream.started >= limits.premature_reset_seconds:
            return
        self._premature_resets += 1
        if stream.partner is not None:
            self._relayed_resets += 1
        least = limits.premature_reset_min_streams
        # Among all streams, and among those relayed to a driver, so that streams the gateway
        # answers itself (cheap to send) cannot dilute resets that cost a driver work.
        for resets, opened, which in (
            (self._premature_resets, self._opened, "streams"),
            (self._relayed_resets, self.relayed, "relayed streams"),
        ):
            if opened >= least and resets * 2 >= opened:
                raise H2Error(
                    ErrorCode.ENHANCE_YOUR_CALM,
                    f"{resets} of {opened} {which} reset by the client within "
                    f"{limits.premature_reset_seconds:g}s of opening",
                )

    def priority_received(self) -> None:
        self._priority_frames += 1
        if self._priority_frames > self.limits.max_priority_frames_per_stream * (1 + self._opened):
            raise H2Error(ErrorCode.ENHANCE_YOUR_CALM, f"{self._priority_frames} PRIORITY frames")

    def _request_head(self, block: bytes) -> RequestHead:
        """The block decoded (always: the dynamic table must see every block) and read as a request.

        A block that left the dynamic table as it was means the same for as long as the table
        does not change (the decoder's own cache rests on the same fact), so its reading is kept:
        a client repeats a handful of header blocks, call after call.
        """
        decoder = self.decoder
        version = decoder.version
        if version == self._heads_version:
            head = self._heads.get(block)
            if head is not None:
                return head
        else:
            self._heads.clear()
            self._heads_version = version
        head = request_head(decoder.decode(block), self.router)
        if decoder.version == version and len(block) <= _HEAD_CACHE_MAX_LEN:
            if len(self._heads) >= _HEAD_CACHE_MAX:
                self._heads.clear()
            self._heads[block] = head
        return head

    def goaway_received(self, last_stream_id: int, code: int, debug: bytes) -> None:
        if code != ErrorCode.NO_ERROR:
            log.info("client sent GOAWAY %s: %s", code, debug[:200])
        self.closing = True

    def drain(self) -> None:
        """Graceful stop: GOAWAY now, close once the streams in flight have ended."""
        if self.draining or self.transport is None:
            return
        self.draining = True
        self.send_frame(f.goaway_frame(self._last_stream_id, ErrorCode.NO_ERROR))
        self.stream_closed(None)

    def reclaim(self) -> None:
        """Close this idle connection to make room for another: GOAWAY NO_ERROR, then closed at
        once (not lingering: it holds a file descriptor another client needs)."""
        if self.transport is None:
            return
        self.draining = True
        self._out.append(f.goaway_frame(self._last_stream_id, ErrorCode.NO_ERROR, b"idle connection reclaimed"))
        self._flush_out()
        transport = self.take_transport()
        assert transport is not None
        # Counted until its socket is closed (connection_lost): at once, unless what we wrote is
        # still waiting for a peer that does not read, which is then cut off.
        if self.paused or transport.get_write_buffer_size():
            transport.abort()
        else:
            transport.close()

    def stream_closed(self, stream: Stream | None) -> None:
        if isinstance(stream, ClientStream):
            self.router.call_done(stream)
            stream.held = []  # (views of read buffers: they would stay pinned while the stream lives)
            if stream.reserved:
                self.release(stream)
        if not self.streams:
            self.idle_since = time.monotonic()
        if self.draining and not self.streams and self.transport is not None:
            self.loop.call_soon(self._close_transport)

    def _close_transport(self) -> None:
        if self.transport is None:
            return
        self._flush_out()
        transport = self.take_transport()
        assert transport is not None
        self._close_lingering(transport)  # what the client sent before it saw our GOAWAY is dropped, not reset
