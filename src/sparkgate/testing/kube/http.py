"""A small HTTP/1.1 server on asyncio streams (``h11`` does the protocol) for the fake API server.

Why not an ASGI server: tests need to break a watch mid-stream the way a dying API server or a
load balancer does — the TCP connection closed with the chunked body unfinished — and ASGI has no
way to say that. Here every streamed response is a connection we hold, and
:meth:`HttpServer.abort_streams` aborts them.

Keep-alive, chunked responses and bodies with ``Content-Length`` are supported (what Kubernetes
clients send); ``Expect: 100-continue``, pipelining and TLS are not.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import urllib.parse
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass, field

import h11

from sparkgate.aio import TaskSupervisor

log = logging.getLogger(__name__)

_READ_BYTES = 65536


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    #: Query parameters (the last value of a repeated one).
    query: dict[str, str]
    #: Header names in lower case.
    headers: dict[str, str]
    body: bytes


@dataclass
class Response:
    status: int
    body: bytes = b""
    content_type: str = "application/json"
    #: A streamed (chunked) body instead of ``body``: sent as it is produced.
    stream: AsyncGenerator[bytes, None] | None = None
    #: Called once if the client goes away while ``stream`` is being sent.
    on_disconnect: Callable[[], None] | None = None
    headers: list[tuple[str, str]] = field(default_factory=list)


Handler = Callable[[Request], Awaitable[Response]]


class _ClientGone(Exception):
    pass


class HttpServer:
    def __init__(self, handler: Handler, host: str = "127.0.0.1", port: int = 0, *, name: str = "http") -> None:
        self._handler = handler
        self.host = host
        self.port = port
        self._name = name
        self._tasks = TaskSupervisor(name)
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.StreamWriter] = set()
        self._streaming: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, self.host, self.port)
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in list(self._connections):
            writer.transport.abort()
        await self._tasks.close()
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    @property
    def streams(self) -> int:
        """Responses being streamed now (open watches, followed logs)."""
        return len(self._streaming)

    def abort_streams(self) -> int:
        """Close every connection that is streaming a response, at once, mid-body; how many."""
        broken = list(self._streaming)
        for writer in broken:
            writer.transport.abort()
        return len(broken)

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        self._tasks.spawn(f"connection {peer}", self._serve(reader, writer))

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = h11.Connection(h11.SERVER)
        self._connections.add(writer)
        try:
            while True:
                request = await self._read_request(conn, reader)
                if request is None:
                    return
                response = await self._handler(request)
                if response.stream is None:
                    await self._send(conn, writer, response)
                else:
                    await self._send_stream(conn, reader, writer, response)
                if conn.our_state is h11.MUST_CLOSE or conn.their_state is h11.MUST_CLOSE:
                    return
                conn.start_next_cycle()
        except (ConnectionError, _ClientGone, h11.ProtocolError):
            return
        finally:
            self._connections.discard(writer)
            writer.close()

    async def _next_event(self, conn: h11.Connection, reader: asyncio.StreamReader) -> object:
        while True:
            event = conn.next_event()
            if event is not h11.NEED_DATA:
                return event
            conn.receive_data(await reader.read(_READ_BYTES))

    async def _read_request(self, conn: h11.Connection, reader: asyncio.StreamReader) -> Request | None:
        event = await self._next_event(conn, reader)
        if not isinstance(event, h11.Request):
            return None
        body = bytearray()
        while True:
            part = await self._next_event(conn, reader)
            if isinstance(part, h11.Data):
                body += part.data
            elif isinstance(part, h11.EndOfMessage):
                break
            else:
                return None
        target = urllib.parse.urlsplit(event.target.decode("latin-1"))
        query = {k: v for k, v in urllib.parse.parse_qsl(target.query, keep_blank_values=True)}
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in event.headers}
        return Request(event.method.decode(), urllib.parse.unquote(target.path), query, headers, bytes(body))

    @staticmethod
    def _head(response: Response, *, length: int | None) -> h11.Response:
        headers = [("content-type", response.content_type), *response.headers]
        headers.append(("content-length", str(length)) if length is not None else ("transfer-encoding", "chunked"))
        return h11.Response(status_code=response.status, headers=headers)

    async def _send(self, conn: h11.Connection, writer: asyncio.StreamWriter, response: Response) -> None:
        writer.write(conn.send(self._head(response, length=len(response.body))) or b"")
        writer.write(conn.send(h11.Data(data=response.body)) or b"")
        writer.write(conn.send(h11.EndOfMessage()) or b"")
        await writer.drain()

    async def _send_stream(
        self, conn: h11.Connection, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, response: Response
    ) -> None:
        assert response.stream is not None
        self._streaming.add(writer)
        eof = self._tasks.spawn("client eof", self._wait_eof(reader, response.on_disconnect))
        try:
            async with contextlib.aclosing(response.stream) as chunks:
                writer.write(conn.send(self._head(response, length=None)) or b"")
                await writer.drain()
                async for chunk in chunks:
                    if writer.transport.is_closing():
                        raise _ClientGone
                    writer.write(conn.send(h11.Data(data=chunk)) or b"")
                    await writer.drain()
            if writer.transport.is_closing():
                raise _ClientGone
            writer.write(conn.send(h11.EndOfMessage()) or b"")
            await writer.drain()
        finally:
            eof.cancel()
            await asyncio.wait({eof})  # (its read ends before the connection reads the next request)
            self._streaming.discard(writer)

    @staticmethod
    async def _wait_eof(reader: asyncio.StreamReader, on_disconnect: Callable[[], None] | None) -> None:
        """While a response streams, the client sends nothing: a read returns only when it is gone."""
        with contextlib.suppress(ConnectionError):
            while await reader.read(_READ_BYTES):
                pass
        if on_disconnect is not None:
            on_disconnect()
