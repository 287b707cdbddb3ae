"""The relay's routing glue: what happens to a client stream once its first message is complete.

``SessionRouter.resolve`` decides:

* :class:`~sparkgate.gateway.sessions.Forward` → open a stream on the driver's connection and attach
  it. A brand-new session's ``preamble`` (a ``Config(Set)`` replaying options held while the
  session was not routable) is first sent as its own unary Config call on that driver and must
  succeed before the client's request goes out; if the driver rejects it, the client gets the
  driver's error as is.
* :class:`~sparkgate.gateway.sessions.Answer` → the gateway responds itself.
* :class:`~sparkgate.errors.SparkgateError` → a trailers-only response with its gRPC status.

A new session's first call whose driver cannot be reached, refuses the preamble with UNAVAILABLE,
resets the stream, drops the connection or answers UNAVAILABLE before any response header is
relayed is sent to another driver (:meth:`SessionRouter.failover`): the
request was complete before it went out, so it is kept until the driver answers.

Post-actions run when the driver's response ends, *before* its trailers reach the client, so the
client's next call already sees the new routing: ReleaseSession drops the route (whatever the
status: the client is done with it), a successful CloneSession routes the clone to the same driver.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Coroutine, Generator
from typing import Any, cast

import grpc

from sparkgate.aio import TaskSupervisor
from sparkgate.connect import wire
from sparkgate.connect.service import ALL_METHODS, SERVICE_PATH
from sparkgate.connect.status import grpc_error
from sparkgate.errors import SparkgateError, Unavailable
from sparkgate.gateway.affinity import Route
from sparkgate.gateway.h2.downstream import (
    DEADLINE_EXCEEDED,
    INTERNAL,
    INVALID_ARGUMENT,
    UNAVAILABLE,
    ClientConnection,
    ClientStream,
    PostAction,
    grpc_timeout,
)
from sparkgate.gateway.h2.frames import ErrorCode
from sparkgate.gateway.h2.hpack import Header
from sparkgate.gateway.h2.upstream import DriverConnection, DriverPool, grpc_status, request_block
from sparkgate.gateway.sessions import Answer, Forward, SessionRouter

log = logging.getLogger(__name__)

#: Seconds the driver may take to answer a new session's Config preamble.
PREAMBLE_TIMEOUT = 60.0
#: Calls whose response changes the routing (:meth:`H2Relay._post_action`).
_POST_ACTION_METHODS = frozenset({"ReleaseSession", "CloneSession"})


class H2Relay:
    """Implements :class:`sparkgate.gateway.h2.downstream.Router` with the session router."""

    def __init__(self, router: SessionRouter, pool: DriverPool, max_message_bytes: int, tasks: TaskSupervisor) -> None:
        self.router = router
        self.pool = pool
        self.max_message_bytes = max_message_bytes
        self._tasks = tasks
        self._paths = frozenset(SERVICE_PATH + m for m in ALL_METHODS)

    def known_path(self, path: str) -> bool:
        return path in self._paths

    def route(self, stream: ClientStream) -> None:
        # Nearly every call is on a session already placed, whose driver connection is open: for
        # those, resolve() finishes without suspending (its fast path, resolve_known), so it is
        # driven right here and the stream attached at once: no task per stream, no extra
        # event-loop turn before the upstream write. Anything that must wait (placing a new
        # session, a preamble, connecting) continues in a task.
        method = stream.method
        try:
            message = stream.first_message()
            if message is None:
                stream.fail(INVALID_ARGUMENT, f"{method}: the request ended before its first message was complete")
                return
            ids = wire.scan_request(method, message)
            resolving = self.router.resolve(method, stream.metadata, ids, message, stream.peer)
            try:
                waiting_on = resolving.send(None)
            except StopIteration as done:
                decision: Forward | Answer = done.value
                if isinstance(decision, Answer):
                    stream.answer(decision.response)
                    return
                conn = self.pool.ready(decision.driver.address)
                if decision.preamble is None and conn is not None:
                    self._forward(stream, conn, decision, ids)
                    return
                self._route_later(stream, self._route(stream, ids, _Ready(decision)))
                return
        except Exception as exc:
            self._failed(stream, exc)
            return
        self._route_later(stream, self._route(stream, ids, _Resume(resolving, waiting_on)))

    def _route_later(self, stream: ClientStream, routing: Coroutine[Any, Any, None]) -> None:
        """Routing that must wait (a driver's start, say) runs in a task; a call with a deadline
        (``grpc-timeout``) is answered DEADLINE_EXCEEDED when it passes, whatever the wait. The
        placing itself goes on: the session's next call finds it done."""
        task = self._tasks.spawn(f"route:{stream.method}", routing)
        timeout = grpc_timeout(stream.metadata)
        if timeout is None:
            return
        left = max(0.0, timeout - (time.monotonic() - stream.started))
        handle = asyncio.get_running_loop().call_later(left, self._deadline_passed, stream, task)
        task.add_done_callback(lambda _t: handle.cancel())

    @staticmethod
    def _deadline_passed(stream: ClientStream, task: asyncio.Task[None]) -> None:
        if not task.done() and not stream.sent_end and not stream.closed:
            stream.fail(
                DEADLINE_EXCEEDED,
                f"{stream.method}: the call's deadline (grpc-timeout) passed while the gateway was still "
                "placing its session on a driver",
            )

    async def _route(self, stream: ClientStream, ids: wire.RequestIds, resolving: Awaitable[Forward | Answer]) -> None:
        stream.keep_held()
        try:
            decision = await resolving
            if isinstance(decision, Answer):
                if not (stream.sent_end or stream.closed):
                    stream.answer(decision.response)
                return
            # Even for a call answered meanwhile (its deadline passed), the session's preamble goes
            # to its driver: the session is placed, and its next calls go there.
            while True:
                try:
                    conn = await self._connect(stream, decision)
                    break
                except Unavailable as exc:
                    # A new session whose driver cannot be reached goes to another one.
                    if stream.closed or not decision.can_fail_over:
                        raise
                    decision = await self.router.failover(decision, exc.message)
            if conn is None or stream.closed or stream.sent_end:
                return  # the driver refused the preamble (answered), or the client cancelled meanwhile
            self._forward(stream, conn, decision, ids)
        except Exception as exc:
            self._failed(stream, exc)

    async def _connect(self, stream: ClientStream, decision: Forward) -> DriverConnection | None:
        """The driver's connection, after the session's preamble (None: the driver refused it)."""
        address = decision.driver.address
        if decision.preamble is not None and not await self._preamble(stream, decision):
            return None
        conn = self.pool.ready(address)
        if conn is None:
            try:
                conn = await self.pool.get(address)
            except Unavailable:
                self.router.clusters.report_unreachable(decision.driver.id)  # probe it now
                raise
        return conn

    def _forward(self, stream: ClientStream, conn: DriverConnection, decision: Forward, ids: wire.RequestIds) -> None:
        method = stream.method
        if stream.route is None:  # (not again for a new session's call sent to another driver)
            self.router.call_started(decision.route.key)
        stream.route = decision.route
        carriers = cast(ClientConnection, stream.conn).sessions
        if decision.route.key not in carriers:
            carriers.add(decision.route.key)
            self.router.carried(decision.route.key)
        if decision.rewrite_user is not None:
            # The driver must see the authenticated identity (Spark keys sessions on user id and
            # session id; for AddArtifacts, on the first message's).
            message = stream.first_message()
            if message is not None:
                stream.replace_first_message(wire.with_user_id(message, decision.rewrite_user))
        if method in _POST_ACTION_METHODS:
            stream.after = self._post_action(method, decision.route, ids)
            if method == "CloneSession":
                stream.collected = bytearray()
        if decision.can_fail_over and stream.recv_end:
            # The whole request is here: keep it until the driver answers, to resend it elsewhere.
            stream.keep_held()  # views would pin read buffers until the driver answers
            held = list(stream.held)
            stream.retry = lambda why: self._retry(stream, ids, decision, held, why)
        driver = decision.driver
        metadata = stream.upstream_metadata + driver.auth_metadata if driver.token else stream.upstream_metadata
        stream.attach(conn.open_stream(request_block(stream.path, driver.address, metadata), stream))

    def _retry(
        self, stream: ClientStream, ids: wire.RequestIds, failed: Forward, held: list[memoryview | bytes], why: str
    ) -> bool:
        """A new session's first call failed on its driver before any response: send it elsewhere."""
        if stream.closed or stream.response_started:
            return False
        partner, stream.partner = stream.partner, None
        if partner is not None:
            partner.partner = None
            if not partner.closed:
                partner.reset(ErrorCode.CANCEL)
        stream.held, stream.held_len = list(held), sum(len(h) for h in held)
        stream.after, stream.collected = None, None

        async def again() -> None:
            try:
                moved = await self.router.failover(failed, why)
            except Exception as exc:
                self._failed(stream, exc)
                return
            await self._route(stream, ids, _Ready(moved))

        self._tasks.spawn(f"failover:{stream.method}", again())
        return True

    def _failed(self, stream: ClientStream, exc: Exception) -> None:
        if isinstance(exc, SparkgateError):
            code, details, trailers = grpc_error(exc)
            if code is grpc.StatusCode.INTERNAL and type(exc) is SparkgateError:
                log.error("internal error: %s", exc.message)
            stream.fail(code.value[0], details, trailers)
            return
        log.error("routing %s failed", stream.method, exc_info=exc)
        stream.fail(INTERNAL, "sparkgate failed to route this call (see the gateway log)")

    async def _preamble(self, stream: ClientStream, decision: Forward) -> bool:
        """Send the held Config(Set) first; False (and the client answered) if the driver refused it."""
        address = decision.driver.address
        assert decision.preamble is not None
        try:
            result = await asyncio.wait_for(
                self.pool.unary(
                    address,
                    SERVICE_PATH + "Config",
                    stream.upstream_metadata + decision.driver.auth_metadata,
                    decision.preamble,
                ),
                PREAMBLE_TIMEOUT,
            )
        except TimeoutError:
            raise Unavailable(
                f"driver {address} did not answer the session's buffered Config within {PREAMBLE_TIMEOUT:.0f}s"
            ) from None
        if result.status == UNAVAILABLE and decision.can_fail_over:
            raise Unavailable(f"driver {address} answered the session's buffered Config with UNAVAILABLE")
        if result.status != 0:
            stream.status = result.status
            stream.relay_blocks(result.blocks)
            return False
        return True

    def _post_action(self, method: str, route: Route, ids: wire.RequestIds) -> PostAction | None:
        if method == "ReleaseSession":

            async def released(status: int | None, response: bytes) -> None:
                await self.router.released(route)

            return released
        if method == "CloneSession":

            async def cloned(status: int | None, response: bytes) -> None:
                if status == 0:
                    await self.router.cloned(route, ids.new_session_id or wire.read_string_field(response, 3))

            return cloned
        return None

    def connection_closed(self, conn: ClientConnection, *, by_client: bool) -> None:
        """A client connection that carried sessions closed (``by_client``: its client closed it,
        and may be gone for good)."""
        self.router.connection_closed(conn.sessions, by_client=by_client)  # type: ignore[arg-type]
        conn.sessions = set()

    def call_done(self, stream: ClientStream) -> None:
        if stream.route is not None:
            self.router.call_ended(stream.route.key)
        if stream.path:  # a stream that got far enough to name a method
            seconds = time.monotonic() - stream.started
            self.router.telemetry.call_done(stream.method, stream.route, stream.status, seconds, stream.reason)

    def finish(self, stream: ClientStream, block: bytes, headers: list[Header] | None) -> None:
        """Run the stream's post-action, then send the driver's final header block (if any) on."""
        after, stream.after = stream.after, None
        if after is None:  # pragma: no cover - callers check
            return
        status = grpc_status(headers) if headers is not None else None
        collected = stream.collected or b""
        response = bytes(collected[5 : 5 + int.from_bytes(collected[1:5], "big")]) if len(collected) >= 5 else b""

        async def run() -> None:
            try:
                await after(status, response)
            except Exception:
                log.exception("%s: updating routes after the driver answered failed", stream.method)
            finally:
                if block and not stream.closed and not stream.sent_end:
                    stream.response_started = True
                    stream.send_headers(block, True)

        self._tasks.spawn(f"after:{stream.method}", run())


class _Ready:
    """An awaitable of a decision already made."""

    def __init__(self, value: Forward | Answer) -> None:
        self._value = value

    def __await__(self) -> Generator[Any, Any, Forward | Answer]:
        return self._value
        yield  # a generator that returns at once


class _Resume:
    """The rest of a coroutine that already ran up to its first suspension (it awaits ``waiting_on``).

    Awaiting this in a task continues the coroutine exactly as ``await coro`` would have: the
    future it waits on is handed to the task, and what the task sends or throws goes on to it.
    """

    def __init__(self, coro: Coroutine[Any, Any, Forward | Answer], waiting_on: Any) -> None:
        self._coro = coro
        self._waiting_on = waiting_on

    def __await__(self) -> Generator[Any, Any, Forward | Answer]:
        coro, waiting_on = self._coro, self._waiting_on
        while True:
            try:
                sent = yield waiting_on
            except GeneratorExit:
                coro.close()
                raise
            except BaseException as exc:
                try:
                    waiting_on = coro.throw(exc)
                except StopIteration as done:
                    return done.value  # type: ignore[no-any-return]
            else:
                try:
                    waiting_on = coro.send(sent)
                except StopIteration as done:
                    return done.value  # type: ignore[no-any-return]
