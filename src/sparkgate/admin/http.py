"""A minimal asyncio HTTP/1.1 server for operator endpoints (GET only, JSON or text bodies).

The gateway's data plane is gRPC; operators and scripts want ``curl``-able endpoints: ``/status``
(pools, drivers, sessions), ``/healthz`` (the process is alive) and ``/readyz`` (it listens, and a
driver is ready or may be started; whether shared state is in reach is reported beside it). This
needs nothing beyond asyncio, so the gateway stays installable without a web stack.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

log = logging.getLogger(__name__)

#: A handler returns ``(http status, body)``; dict/list bodies are sent as JSON.
Handler = Callable[[], Awaitable[tuple[int, Any]]]

_REASONS = {200: "OK", 404: "Not Found", 405: "Method Not Allowed", 400: "Bad Request", 503: "Service Unavailable"}
_MAX_REQUEST_HEAD = 8192


class AdminServer:
    def __init__(self, host: str, port: int, routes: Mapping[str, Handler]) -> None:
        self.host = host
        self.port = port
        self._routes = dict(routes)
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        log.info("admin endpoints on http://%s:%d (%s)", self.host, self.port, ", ".join(sorted(self._routes)))

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=10)
            if len(head) > _MAX_REQUEST_HEAD:
                raise ValueError("request head too large")
            method, _, rest = head.split(b"\r\n", 1)[0].decode("latin-1").partition(" ")
            path = rest.split(" ", 1)[0].split("?", 1)[0]
            status, body = await self._dispatch(method, path)
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
            status, body = 400, {"error": "malformed HTTP request"}
        except Exception:
            log.exception("admin endpoint failed")
            status, body = 500, {"error": "internal error (see the gateway log)"}
        if isinstance(body, (dict, list)):
            data, ctype = json.dumps(body, indent=1, default=str).encode(), "application/json"
        else:
            data, ctype = str(body).encode(), "text/plain; charset=utf-8"
        writer.write(
            f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\nContent-Type: {ctype}\r\n"
            f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n".encode()
            + data
        )
        with contextlib.suppress(ConnectionError):
            await writer.drain()
        writer.close()

    async def _dispatch(self, method: str, path: str) -> tuple[int, Any]:
        handler = self._routes.get(path)
        if handler is None:
            return 404, {"error": f"no endpoint {path}", "endpoints": sorted(self._routes)}
        if method not in ("GET", "HEAD"):
            return 405, {"error": f"{method} is not allowed; use GET"}
        return await handler()
