"""A fake Spark Connect driver for tests and benchmarks: all eleven RPCs, raw bytes, no pyspark.

Unary RPCs answer at once with a response carrying only the session ids (what a driver answers
for a no-op). ``ExecutePlan`` streams ``chunks`` responses, each an ``arrow_batch`` of
``chunk_bytes`` constant bytes (sized like the Arrow batches Spark sends for a large
``toArrow()``), then one ``result_complete``. A request can override both with metadata headers
``x-fake-chunks`` and ``x-fake-chunk-bytes``, and slow the stream down with ``x-fake-delay-ms``
(a pause before each message).

Tests read :attr:`FakeSparkConnectServer.calls` (method, ids, headers as received),
:attr:`FakeSparkConnectServer.cancelled` (streams whose caller cancelled them) and make the
next call of a method fail with :meth:`FakeSparkConnectServer.fail` (code, details, trailers,
optionally after some stream messages). Benchmarks (and the fake kubelet's Pods) run it as a separate process::

    python -m sparkgate.testing.fake_backend --port 0     # prints "READY host:port"

which requires a bearer token if given one with ``--token`` or, like a Spark Connect server, in
``SPARK_CONNECT_AUTHENTICATE_TOKEN``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
import grpc.aio

from sparkgate.connect import wire
from sparkgate.connect.service import SERVICE, UNARY_METHODS

Metadata = tuple[tuple[str, str | bytes], ...]

#: Where a Spark Connect server finds its token when ``spark.connect.authenticate.token`` is not set.
TOKEN_ENV = "SPARK_CONNECT_AUTHENTICATE_TOKEN"
#: Default ``ExecutePlan`` stream: 64 x 4 MiB = 256 MiB, the size of a large ``toArrow()``.
DEFAULT_CHUNKS = 64
DEFAULT_CHUNK_BYTES = 4 * 1024 * 1024
MAX_MESSAGE_BYTES = 256 * 1024 * 1024
_RECORD_REQUEST_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class RecordedCall:
    """One RPC as the fake received it (for a client stream: its first message)."""

    method: str
    session_id: str
    user_id: str
    operation_id: str
    metadata: Metadata
    #: The request (first message) itself, when it is small (up to 64 KiB).
    request: bytes = b""

    def header(self, key: str) -> str | bytes | None:
        return next((v for k, v in self.metadata if k == key), None)


@dataclass(frozen=True, slots=True)
class Failure:
    """An error status to answer with instead of (or, for streams, in the middle of) a response."""

    code: grpc.StatusCode
    details: str = ""
    trailers: Metadata = ()
    #: Stream messages to send before failing (``ExecutePlan`` only).
    after: int = 0


def _arrow_field(chunk_bytes: int) -> bytes:
    """``arrow_batch`` (field 2) = ``ArrowBatch{row_count=1, data=2}`` with ``chunk_bytes`` of data."""
    batch = wire.encode_varint_field(1, 1) + wire.encode_string(2, b"\xab" * chunk_bytes)
    return wire.encode_string(2, batch)


def _int_header(md: Metadata, key: str, default: int) -> int:
    value = next((v for k, v in md if k == key), None)
    return default if value is None else int(value)


class FakeSparkConnectServer:
    """``async with FakeSparkConnectServer(port=0) as fake: ... fake.address``."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        chunks: int = DEFAULT_CHUNKS,
        chunk_bytes: int = DEFAULT_CHUNK_BYTES,
        record: bool = True,
        token: str | None = None,
    ) -> None:
        self.host = host
        #: Like ``spark.connect.authenticate.token``: calls without ``authorization: Bearer <token>``
        #: get UNAUTHENTICATED (Spark's PreSharedKeyAuthenticationInterceptor).
        self.token = token
        self.port = port
        self.chunks = chunks
        self.chunk_bytes = chunk_bytes
        #: Off for benchmarks, so a long run does not grow memory.
        self.record = record
        self.calls: list[RecordedCall] = []
        #: Methods of ``ExecutePlan``/``ReattachExecute`` streams cancelled by their caller, in order.
        self.cancelled: list[str] = []
        self.server_side_session_id = str(uuid.uuid4())
        self._failures: dict[str, deque[Failure]] = {}
        # The big part of every stream message is built once per size and reused.
        self._arrow_fields: dict[int, bytes] = {}
        self._server: grpc.aio.Server | None = None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def fail(
        self,
        method: str,
        code: grpc.StatusCode,
        details: str = "",
        trailers: Sequence[tuple[str, str | bytes]] = (),
        *,
        after: int = 0,
        times: int = 1,
    ) -> None:
        """Answer the next ``times`` calls of ``method`` with this status."""
        failure = Failure(code, details, tuple(trailers), after)
        self._failures.setdefault(method, deque()).extend([failure] * times)

    def calls_of(self, method: str) -> list[RecordedCall]:
        return [c for c in self.calls if c.method == method]

    async def wait_cancelled(self, timeout: float) -> list[str]:
        """:attr:`cancelled` once a stream was cancelled, or as it is after ``timeout`` seconds
        (a client's cancel reaches the server a moment after the client gave it)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not self.cancelled and loop.time() < deadline:
            await asyncio.sleep(0.01)
        return self.cancelled

    # -- lifecycle ----------------------------------------------------------------------------

    async def __aenter__(self) -> FakeSparkConnectServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        server = grpc.aio.server(
            options=[
                ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
                ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                ("grpc.so_reuseport", 0),
            ]
        )
        server.add_generic_rpc_handlers((self._generic_handler(),))
        self.port = server.add_insecure_port(f"{self.host}:{self.port}")
        if self.port == 0:
            raise OSError(f"fake Spark Connect server could not listen on {self.host}")
        await server.start()
        self._server = server

    async def stop(self, grace: float | None = 0) -> None:
        if self._server is not None:
            await self._server.stop(grace)
            self._server = None

    async def wait(self) -> None:
        if self._server is not None:
            await self._server.wait_for_termination()

    # -- handlers -----------------------------------------------------------------------------

    def _receive(self, method: str, request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> Metadata:
        md: Metadata = tuple(context.invocation_metadata() or ())
        if self.record:
            ids = wire.scan_request(method, request)
            small = request if len(request) <= _RECORD_REQUEST_BYTES else b""
            self.calls.append(RecordedCall(method, ids.session_id, ids.user_id, ids.operation_id, md, small))
        return md

    def _next_failure(self, method: str, md: Metadata = ()) -> Failure | None:
        if self.token is not None:
            sent = dict(md).get("authorization")
            if sent is None:
                return Failure(grpc.StatusCode.UNAUTHENTICATED, "No authentication token provided", (), 0)
            if sent != f"Bearer {self.token}":
                return Failure(grpc.StatusCode.UNAUTHENTICATED, "Invalid authentication token", (), 0)
        queue = self._failures.get(method)
        return queue.popleft() if queue else None

    async def _abort(self, context: grpc.aio.ServicerContext[Any, Any], failure: Failure) -> None:
        await context.abort(failure.code, failure.details, failure.trailers)

    def _unary(self, method: str) -> Callable[..., Any]:
        async def handler(request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
            md = self._receive(method, request, context)
            failure = self._next_failure(method, md)
            if failure is not None:
                await self._abort(context, failure)
            session_id = wire.read_string_field(request, 1)
            response = wire.empty_response(method, session_id, self.server_side_session_id)
            if method == "CloneSession":  # CloneSessionResponse.new_session_id = 3
                new_id = wire.read_string_field(request, 4) or str(uuid.uuid4())
                response += wire.encode_string(3, new_id)
            return response

        return handler

    def _stream(self, method: str) -> Callable[..., AsyncIterator[bytes]]:
        async def handler(request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[bytes]:
            md = self._receive(method, request, context)
            failure = self._next_failure(method, md)
            if failure is not None and failure.code is grpc.StatusCode.UNAUTHENTICATED:
                await self._abort(context, failure)
            ids = wire.scan_request(method, request)
            # ExecutePlanResponse: session_id=1, operation_id=12, server_side_session_id=15.
            head = (
                wire.encode_string(1, ids.session_id)
                + wire.encode_string(12, ids.operation_id or str(uuid.uuid4()))
                + wire.encode_string(15, self.server_side_session_id)
            )
            # ReattachExecute on the fake has nothing left to send: the stream is complete.
            chunks = _int_header(md, "x-fake-chunks", self.chunks) if method == "ExecutePlan" else 0
            size = _int_header(md, "x-fake-chunk-bytes", self.chunk_bytes)
            delay = _int_header(md, "x-fake-delay-ms", 0) / 1000
            arrow = self._arrow_fields.get(size)
            if arrow is None:
                arrow = self._arrow_fields[size] = _arrow_field(size)
            try:
                for i in range(chunks):
                    if delay:
                        await asyncio.sleep(delay)
                    if failure is not None and i == failure.after:
                        await self._abort(context, failure)
                    yield b"".join((head, wire.encode_string(13, f"r-{i}"), arrow))
                if failure is not None:
                    await self._abort(context, failure)
                yield head + wire.encode_string(13, f"r-{chunks}") + wire.encode_string(14, b"")
            except asyncio.CancelledError:
                self.cancelled.append(method)
                raise

        return handler

    def _client_stream(self, method: str) -> Callable[..., Any]:
        async def handler(requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
            first = b""
            async for msg in requests:
                first = first or msg
            md = self._receive(method, first, context)
            failure = self._next_failure(method, md)
            if failure is not None:
                await self._abort(context, failure)
            session_id = wire.read_string_field(first, 1)
            return wire.empty_response(method, session_id, self.server_side_session_id)

        return handler

    def _generic_handler(self) -> grpc.GenericRpcHandler:
        handlers: dict[str, grpc.RpcMethodHandler] = {
            m: grpc.unary_unary_rpc_method_handler(self._unary(m)) for m in UNARY_METHODS
        }
        for m in ("ExecutePlan", "ReattachExecute"):
            handlers[m] = grpc.unary_stream_rpc_method_handler(self._stream(m))
        handlers["AddArtifacts"] = grpc.stream_unary_rpc_method_handler(self._client_stream("AddArtifacts"))
        return grpc.method_handlers_generic_handler(SERVICE, handlers)


async def _serve(host: str, port: int, chunks: int, chunk_bytes: int, token: str | None = None) -> None:
    fake_server = FakeSparkConnectServer(host, port, chunks=chunks, chunk_bytes=chunk_bytes, record=False, token=token)
    async with fake_server as fake:
        print(f"READY {fake.address}", flush=True)  # the parent process reads the address from here
        await fake.wait()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Run a fake Spark Connect server (for benchmarks).")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (printed on stdout)")
    parser.add_argument("--chunks", type=int, default=DEFAULT_CHUNKS, help="ExecutePlan messages")
    parser.add_argument("--chunk-bytes", type=int, default=DEFAULT_CHUNK_BYTES, help="bytes per message")
    parser.add_argument(
        "--token",
        default=os.environ.get(TOKEN_ENV) or None,
        help=f"require 'authorization: Bearer <token>' on every call (default: ${TOKEN_ENV}, as Spark reads it)",
    )
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(args.host, args.port, args.chunks, args.chunk_bytes, args.token))


if __name__ == "__main__":
    main()
