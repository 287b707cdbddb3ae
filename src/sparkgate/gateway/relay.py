"""The byte relay: all eleven ``SparkConnectService`` RPCs, forwarded without decoding.

Requests and responses stay ``bytes`` end to end (no (de)serializer on either leg); the only look
inside is :func:`sparkgate.connect.wire.scan_request`, a top-level field scan. Status code, details
and trailing metadata (``grpc-status-details-bin`` with Spark's ``ErrorInfo``) from the driver are
passed back exactly: clients rely on them for error classes, reattach and SESSION_CHANGED.

Streams: a reader task pulls from the driver while the handler writes to the client, so receiving
message *n+1* can overlap with sending message *n* (measured: within noise of a plain ``async for``
loop — grpc-python's own copies dominate; see bench/README.md). A cancelled client call cancels the
upstream call.

Failover: when a new session's first call gets UNAVAILABLE from its driver before any response
reached the client (unreachable, shutting down), the session is placed on another driver and the
call sent again (:meth:`SessionRouter.failover`). AddArtifacts is not resent (its request stream
is consumed as it goes); clients never open a session with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
import grpc.aio

from sparkgate.connect import wire
from sparkgate.connect.service import CLIENT_STREAM_METHODS, SERVER_STREAM_METHODS, SERVICE, UNARY_METHODS
from sparkgate.connect.status import grpc_error
from sparkgate.errors import SparkgateError
from sparkgate.gateway.affinity import Route
from sparkgate.gateway.channels import ChannelPool
from sparkgate.gateway.sessions import Answer, Forward, SessionRouter
from sparkgate.security.tls import ServerTls

log = logging.getLogger(__name__)


# Headers not forwarded to drivers: transport-level, or credentials meant for the gateway only.
_DROP_HEADERS = frozenset({"user-agent", "authorization", "te", "content-type", "grpc-accept-encoding"})
_STREAM_QUEUE_DEPTH = 4
_EOF = object()


def _upstream_metadata(md: Sequence[tuple[str, str | bytes]] | None) -> tuple[tuple[str, str | bytes], ...]:
    if not md:
        return ()
    return tuple((k, v) for k, v in md if k not in _DROP_HEADERS and not k.startswith(":"))


def _trailers(err: grpc.aio.AioRpcError) -> tuple[tuple[str, str | bytes], ...]:
    md = err.trailing_metadata()
    return tuple(md) if md else ()


async def _abort(context: grpc.aio.ServicerContext[Any, Any], err: SparkgateError) -> None:
    code, details, trailers = grpc_error(err)
    if err.grpc_status is grpc.StatusCode.INTERNAL and type(err) is SparkgateError:
        log.error("internal error: %s", err.message)
    await context.abort(code, details, trailers)


async def _abort_upstream(context: grpc.aio.ServicerContext[Any, Any], err: grpc.aio.AioRpcError) -> None:
    await context.abort(err.code(), err.details() or "", _trailers(err))


def _timeout(context: grpc.aio.ServicerContext[Any, Any]) -> float | None:
    remaining = context.time_remaining()
    return remaining if remaining is not None and remaining < 1e8 else None


async def _pump(call: Any, queue: asyncio.Queue[object]) -> None:
    """Move a driver stream's messages into ``queue``, then ``_EOF`` or the call's error."""
    try:
        while True:
            msg = await call.read()
            if msg is grpc.aio.EOF:
                break
            await queue.put(msg)
        await queue.put(_EOF)
    except grpc.aio.AioRpcError as err:
        await queue.put(err)


async def _stop(reader: asyncio.Task[None], call: Any) -> None:
    if not reader.done():
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader
    call.cancel()  # no-op when it already finished; stops the driver-side work otherwise


@dataclass(slots=True)
class _Call:
    method: str
    started: float
    route: Route | None = None


class Relay:
    """Implements the service as generic handlers over ``bytes``."""

    def __init__(self, router: SessionRouter, channels: ChannelPool, tls: ServerTls | None = None) -> None:
        self.router = router
        self.channels = channels
        self.tls = tls

    # -- plumbing -----------------------------------------------------------------------------

    def _track(self, method: str, context: grpc.aio.ServicerContext[Any, Any]) -> _Call:
        """Report the call to telemetry when it ends, whichever way it ends."""
        call = _Call(method, time.monotonic())
        telemetry = self.router.telemetry

        def done(ctx: Any) -> None:
            code = ctx.code()
            status = None if ctx.cancelled() else (0 if code is None else code.value[0])
            telemetry.call_done(method, call.route, status, time.monotonic() - call.started, ctx.details() or "")

        context.add_done_callback(done)
        return call

    async def _route(
        self,
        method: str,
        request: bytes,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> Forward | Answer:
        call = self._track(method, context)
        try:
            ids = wire.scan_request(method, request)
            md = context.invocation_metadata() or ()
            decision = await self.router.resolve(method, md, ids, request)
            if isinstance(decision, Forward):
                call.route = decision.route
            return decision
        except SparkgateError as err:
            await _abort(context, err)
            raise AssertionError("unreachable") from None

    async def _upstream_failed(
        self, context: grpc.aio.ServicerContext[Any, Any], fwd: Forward, err: grpc.aio.AioRpcError
    ) -> None:
        """Pass the driver's status on; an unreachable driver is reported for an immediate probe."""
        if err.code() is grpc.StatusCode.UNAVAILABLE:
            self.router.clusters.report_unreachable(fwd.driver.id)
        await _abort_upstream(context, err)

    async def _preamble(self, fwd: Forward, md: tuple[tuple[str, str | bytes], ...]) -> None:
        if fwd.preamble is None:
            return
        call = self.channels.unary(fwd.driver.address, "Config")
        await call(fwd.preamble, metadata=md, timeout=60)

    # -- handlers -----------------------------------------------------------------------------

    def _can_fail_over(self, fwd: Forward, err: grpc.aio.AioRpcError) -> bool:
        return fwd.can_fail_over and err.code() is grpc.StatusCode.UNAVAILABLE

    async def _failover(
        self, context: grpc.aio.ServicerContext[Any, Any], fwd: Forward, err: grpc.aio.AioRpcError
    ) -> Forward:
        try:
            return await self.router.failover(fwd, f"{err.code().name}: {err.details()}")
        except SparkgateError as exc:
            await _abort(context, exc)
            raise AssertionError("unreachable") from None

    def unary(self, method: str) -> Callable[..., Any]:
        async def handler(request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
            decision = await self._route(method, request, context)
            if isinstance(decision, Answer):
                return decision.response
            if decision.rewrite_user is not None:
                request = wire.with_user_id(request, decision.rewrite_user)
            client_md = _upstream_metadata(context.invocation_metadata())
            while True:
                md = client_md + decision.driver.auth_metadata
                try:
                    await self._preamble(decision, md)
                    response: bytes = await self.channels.unary(decision.driver.address, method)(
                        request, metadata=md, timeout=_timeout(context)
                    )
                    break
                except grpc.aio.AioRpcError as err:
                    if self._can_fail_over(decision, err):
                        decision = await self._failover(context, decision, err)
                        continue
                    if method == "ReleaseSession":
                        await self.router.released(decision.route)
                    await self._upstream_failed(context, decision, err)
                    raise AssertionError("unreachable") from None
            if method == "ReleaseSession":
                await self.router.released(decision.route)
            elif method == "CloneSession":
                ids = wire.scan_request(method, request)
                new_id = ids.new_session_id or wire.read_string_field(response, 3)
                await self.router.cloned(decision.route, new_id)
            return response

        return handler

    def server_stream(self, method: str) -> Callable[..., Any]:
        async def handler(request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> None:
            decision = await self._route(method, request, context)
            if isinstance(decision, Answer):  # pragma: no cover - streams always need a driver
                await context.write(decision.response)
                return
            if decision.rewrite_user is not None:
                request = wire.with_user_id(request, decision.rewrite_user)
            client_md = _upstream_metadata(context.invocation_metadata())
            while True:
                md = client_md + decision.driver.auth_metadata
                try:
                    await self._preamble(decision, md)
                except grpc.aio.AioRpcError as err:
                    if self._can_fail_over(decision, err):
                        decision = await self._failover(context, decision, err)
                        continue
                    await self._upstream_failed(context, decision, err)
                call = self.channels.stream(decision.driver.address, method)(
                    request, metadata=md, timeout=_timeout(context)
                )
                queue: asyncio.Queue[object] = asyncio.Queue(_STREAM_QUEUE_DEPTH)
                reader = asyncio.create_task(_pump(call, queue), name=f"relay:{method}")
                try:
                    item = await queue.get()
                except BaseException:
                    await _stop(reader, call)
                    raise
                if isinstance(item, grpc.aio.AioRpcError) and self._can_fail_over(decision, item):
                    await _stop(reader, call)  # nothing reached the client: send it elsewhere
                    decision = await self._failover(context, decision, item)
                    continue
                break
            try:
                while item is not _EOF:
                    if isinstance(item, grpc.aio.AioRpcError):
                        await self._upstream_failed(context, decision, item)
                    await context.write(item)
                    item = await queue.get()
            finally:
                await _stop(reader, call)

        return handler

    def client_stream(self, method: str) -> Callable[..., Any]:
        async def handler(request_iterator: AsyncIterator[bytes], context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
            try:
                first = await request_iterator.__anext__()
            except StopAsyncIteration:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"{method}: empty request stream")
                raise AssertionError("unreachable") from None
            decision = await self._route(method, first, context)
            if isinstance(decision, Answer):  # pragma: no cover
                return decision.response
            if decision.rewrite_user is not None:
                first = wire.with_user_id(first, decision.rewrite_user)

            async def requests() -> AsyncIterator[bytes]:
                yield first
                async for msg in request_iterator:
                    yield msg

            md = _upstream_metadata(context.invocation_metadata()) + decision.driver.auth_metadata
            try:
                await self._preamble(decision, md)
                response: bytes = await self.channels.client_stream(decision.driver.address, method)(
                    requests(), metadata=md, timeout=_timeout(context)
                )
            except grpc.aio.AioRpcError as err:
                await self._upstream_failed(context, decision, err)
                raise AssertionError("unreachable") from None
            return response

        return handler

    def generic_handler(self) -> grpc.GenericRpcHandler:
        handlers: dict[str, grpc.RpcMethodHandler] = {}
        for m in UNARY_METHODS:
            handlers[m] = grpc.unary_unary_rpc_method_handler(self.unary(m))
        for m in SERVER_STREAM_METHODS:
            handlers[m] = grpc.unary_stream_rpc_method_handler(self.server_stream(m))
        for m in CLIENT_STREAM_METHODS:
            handlers[m] = grpc.stream_unary_rpc_method_handler(self.client_stream(m))
        return grpc.method_handlers_generic_handler(SERVICE, handlers)
