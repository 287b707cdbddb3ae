"""Limits on what reaches the Playground: request bodies and header values."""

from __future__ import annotations

from fastapi import HTTPException
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sparkgate.errors import BadRequest


class BodyTooLarge(HTTPException):
    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body is larger than the limit of {limit} bytes (playground.max_body_bytes)")


class BodyLimit:
    """Requests whose body is larger than ``limit`` bytes get 413 before it is read whole: at once
    when they say so in Content-Length, or as soon as more than that has arrived."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.limit):
            too_large = declared.isdigit()
            error = BodyTooLarge(self.limit).detail if too_large else "Content-Length is not a number"
            response = JSONResponse({"error": error, "problems": []}, status_code=413 if too_large else 400)
            await response(scope, receive, send)
            return
        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise BodyTooLarge(self.limit)  # (FastAPI passes HTTPExceptions on as they are)
            return message

        await self.app(scope, limited, send)


def header_text(value: str | None, name: str) -> str | None:
    """A header's value as text: its bytes must be UTF-8 without control characters."""
    if value is None:
        return None
    try:
        text = value.encode("latin-1").decode("utf-8")  # (the server decoded the bytes as Latin-1)
    except (UnicodeEncodeError, UnicodeDecodeError):
        raise BadRequest(f"header {name} is not valid UTF-8 text") from None
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in text):
        raise BadRequest(f"header {name} has control characters")
    return text
