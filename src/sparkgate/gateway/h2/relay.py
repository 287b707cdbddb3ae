"""The engine's side of a call: what happens to a client stream once its first message is complete.

:class:`CallRelay` asks the call pipeline (:mod:`sparkgate.gateway.pipeline`) for the call's
intent and carries it out:

* :class:`~sparkgate.gateway.pipeline.intents.Forward` → open a stream on the driver's connection
  and attach the client's. A brand-new session's held ``Config(Set)`` options are first sent as
  their own Config call on that driver and must succeed before the client's request goes out; if
  the driver refuses them, the client gets the driver's error as is.
* :class:`~sparkgate.gateway.pipeline.intents.Answer` → the method's empty response, status OK.
* :class:`~sparkgate.gateway.pipeline.intents.Refuse` → a trailers-only response with its status.
* :class:`~sparkgate.gateway.pipeline.intents.Wait` → the same, once the decision is made (in a
  task, under the call's ``grpc-timeout``).

**Failover.** A new session's first call whose driver cannot be reached, refuses the held options
with UNAVAILABLE, resets the stream, drops the connection or answers UNAVAILABLE before any response
header is relayed is sent to another driver: the request was complete before it went out, so it is
kept until the driver answers.

**After the call.** ReleaseSession and CloneSession change the routing when the driver has
answered (:mod:`~sparkgate.gateway.pipeline.after_call`), *before* the trailers reach the client.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Coroutine
from typing import Any

import grpc

from sparkgate.aio import TaskSupervisor
from sparkgate.connect import wire
from sparkgate.connect.service import ALL_METHODS, SERVICE_PATH
from sparkgate.connect.status import grpc_error
from sparkgate.errors import SparkgateError, Unavailable
from sparkgate.gateway.h2.downstream import (
    DEADLINE_EXCEEDED,
    INTERNAL,
    INVALID_ARGUMENT,
    UNAVAILABLE,
    ClientConnection,
    ClientStream,
    grpc_timeout,
)
from sparkgate.gateway.h2.hpack import Header
from sparkgate.gateway.h2.upstream import DriverConnection, DriverPool, grpc_status, request_block
from sparkgate.gateway.pipeline.call import Call
from sparkgate.gateway.pipeline.decide import CallPipeline
from sparkgate.gateway.pipeline.intents import Answer, Decided, Forward, Refuse, Wait

log = logging.getLogger(__name__)

#: Seconds the driver may take to answer a new session's held Config options.
PREAMBLE_TIMEOUT = 60.0


class CallRelay:
    """Implements :class:`sparkgate.gateway.h2.downstream.Router` with the call pipeline."""

    def __init__(self, pipeline: CallPipeline, pool: DriverPool, max_message_bytes: int, tasks: TaskSupervisor) -> None:
        self.pipeline = pipeline
        self.sessions = pipeline.book
        self.pool = pool
        self.max_message_bytes = max_message_bytes
        self._tasks = tasks
        self._paths = frozenset(SERVICE_PATH + m for m in ALL_METHODS)

    def known_path(self, path: str) -> bool:
        return path in self._paths

    # -- deciding ---------------------------------------------------------------------------------

    def route(self, stream: ClientStream) -> None:
        # Nearly every call is of a placed session whose driver connection is open: the pipeline
        # decides it without waiting and the stream is attached at once, with no task and no extra
        # event-loop turn before the upstream write. Anything that must wait runs in a task.
        method = stream.method
        try:
            message = stream.first_message()
            if message is None:
                stream.fail(INVALID_ARGUMENT, f"{method}: the request ended before its first message was complete")
                return
            call = Call(method, stream.metadata, wire.scan_request(method, message), message, stream.peer)
            intent = self.pipeline.decide(call)
            if isinstance(intent, Wait):
                self._carry_out_later(stream, call, intent.decision)
            elif type(intent) is Forward and intent.held_config is None:
                conn = self.pool.ready(intent.driver.address)
                if conn is not None:
                    self._forward(stream, conn, call, intent)
                else:
                    self._carry_out_later(stream, call, _decided(intent))
            else:
                self._carry_out(stream, call, intent)
        except Exception as exc:
            self._failed(stream, exc)

    def _carry_out(self, stream: ClientStream, call: Call, intent: Answer | Refuse | Forward) -> None:
        if type(intent) is Answer:
            stream.answer(wire.empty_response(intent.method, intent.session_id))
        elif type(intent) is Refuse:
            self._failed(stream, intent.error)
        else:
            self._carry_out_later(stream, call, _decided(intent))

    def _carry_out_later(self, stream: ClientStream, call: Call, decision: Awaitable[Decided]) -> None:
        """A decision that must wait (a driver's start, say) runs in a task; a call with a deadline
        (``grpc-timeout``) is answered DEADLINE_EXCEEDED when it passes, whatever the wait. The
        placing itself goes on: the session's next call finds it done."""
        task = self._tasks.spawn(f"route:{call.method}", self._relay(stream, call, decision))
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

    async def _relay(self, stream: ClientStream, call: Call, decision: Awaitable[Decided]) -> None:
        stream.keep_held()
        try:
            decided = await decision
            if type(decided) is not Forward:
                if not (stream.sent_end or stream.closed):
                    self._carry_out(stream, call, decided)
                return
            forward: Forward = decided
            # Even for a call answered meanwhile (its deadline passed), the session's held options go
            # to its driver: the session is placed, and its next calls go there.
            while True:
                try:
                    conn = await self._connect(stream, forward)
                    break
                except Unavailable as exc:
                    # A new session whose driver cannot be reached goes to another one.
                    if stream.closed or not forward.can_fail_over:
                        raise
                    forward = await self.pipeline.placement.failover(forward, exc.message)
            if conn is None or stream.closed or stream.sent_end:
                return  # the driver refused the held options (answered), or the client cancelled
            self._forward(stream, conn, call, forward)
        except Exception as exc:
            self._failed(stream, exc)

    async def _connect(self, stream: ClientStream, forward: Forward) -> DriverConnection | None:
        """The driver's connection, after the session's held options (None: the driver refused them)."""
        address = forward.driver.address
        if forward.held_config is not None and not await self._send_held_config(stream, forward):
            return None
        conn = self.pool.ready(address)
        if conn is None:
            try:
                conn = await self.pool.get(address)
            except Unavailable:
                self.sessions.clusters.report_unreachable(forward.driver.id)  # probe it now
                raise
        return conn

    async def _send_held_config(self, stream: ClientStream, forward: Forward) -> bool:
        """Send the held Config(Set) first; False (and the client answered) if the driver refused it."""
        address = forward.driver.address
        route = forward.route
        assert forward.held_config is not None
        request = wire.encode_config_set_request(route.session_id, route.user_id, list(forward.held_config))
        try:
            result = await asyncio.wait_for(
                self.pool.call(
                    address,
                    SERVICE_PATH + "Config",
                    stream.upstream_metadata + forward.driver.auth_metadata,
                    request,
                ),
                PREAMBLE_TIMEOUT,
            )
        except TimeoutError:
            raise Unavailable(
                f"driver {address} did not answer the session's buffered Config within {PREAMBLE_TIMEOUT:.0f}s"
            ) from None
        if result.status == UNAVAILABLE and forward.can_fail_over:
            raise Unavailable(f"driver {address} answered the session's buffered Config with UNAVAILABLE")
        if result.status != 0:
            stream.end_with_driver_answer(result.status, result.blocks)
            return False
        return True

    # -- relaying ---------------------------------------------------------------------------------

    def _forward(self, stream: ClientStream, conn: DriverConnection, call: Call, forward: Forward) -> None:
        route = forward.route
        first_call, first_on_connection = stream.goes_to(route)
        if first_call:  # (not again for a new session's call sent to another driver)
            self.sessions.call_started(route.key)
        if first_on_connection:
            self.sessions.carried(route.key)
        if forward.rewrite_user is not None:
            # The driver must see the authenticated identity (Spark keys sessions on user id and
            # session id; for AddArtifacts, on the first message's).
            message = stream.first_message()
            if message is not None:
                stream.replace_first_message(wire.with_user_id(message, forward.rewrite_user))
        after_call = self.pipeline.after_call
        if after_call.applies(call.method):
            stream.run_after_answer(
                lambda status, response: after_call.run(call.method, route, call.ids, status, response),
                keep_response=after_call.reads_response(call.method),
            )
        if forward.can_fail_over and stream.recv_end:
            # The whole request is here: keep it until the driver answers, to resend it elsewhere.
            stream.keep_for_failover(lambda why: self._fail_over(stream, call, forward, why))
        driver = forward.driver
        metadata = stream.upstream_metadata + driver.auth_metadata if driver.token else stream.upstream_metadata
        stream.attach(conn.open_stream(request_block(stream.path, driver.address, metadata), stream))

    def _fail_over(self, stream: ClientStream, call: Call, failed: Forward, why: str) -> bool:
        """A new session's first call failed on its driver before any response: send it elsewhere
        (False: too late, the client saw part of the answer or left)."""
        if not stream.rewind():
            return False

        async def again() -> None:
            try:
                moved = await self.pipeline.placement.failover(failed, why)
            except Exception as exc:
                self._failed(stream, exc)
                return
            await self._relay(stream, call, _decided(moved))

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

    def finish(self, stream: ClientStream, block: bytes, headers: list[Header] | None) -> None:
        """Run the stream's after-answer action, then send the driver's final header block (if any) on."""
        status = grpc_status(headers) if headers is not None else None
        action = stream.take_after_answer()
        if action is None:  # pragma: no cover - callers check
            return
        run, response = action

        async def after() -> None:
            try:
                await run(status, response)
            except Exception:
                log.exception("%s: updating routes after the driver answered failed", stream.method)
            finally:
                if block:
                    stream.send_final_block(block)

        self._tasks.spawn(f"after:{stream.method}", after())

    # -- reports from the client leg --------------------------------------------------------------

    def connection_closed(self, conn: ClientConnection, *, by_client: bool) -> None:
        """A client connection that carried sessions closed (``by_client``: its client closed it,
        and may be gone for good)."""
        self.sessions.connection_closed(conn.take_sessions(), by_client=by_client)

    def call_done(self, stream: ClientStream) -> None:
        if stream.route is not None:
            self.sessions.call_ended(stream.route.key)
        if stream.path:  # a stream that got far enough to name a method
            seconds = time.monotonic() - stream.started
            self.pipeline.hook.call_done(stream.method, stream.route, stream.status, seconds, stream.reason)


def _decided(decision: Decided) -> Coroutine[Any, Any, Decided]:
    async def decided() -> Decided:
        return decision

    return decided()
