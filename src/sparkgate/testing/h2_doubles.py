"""Test doubles for driving the h2 engine's connections without sockets: a transport that keeps
what is written, and a router that routes nothing (tests and the fuzz targets in ``fuzz/``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sparkgate.connect.service import SERVICE_PATH

if TYPE_CHECKING:
    from sparkgate.gateway.h2.downstream import ClientStream
    from sparkgate.gateway.h2.hpack import Header


class StubRouter:
    """Knows the Spark Connect service's paths; keeps the streams it is asked to route."""

    max_message_bytes = 1 << 20

    def __init__(self) -> None:
        self.routed: list[ClientStream] = []

    def known_path(self, path: str) -> bool:
        return path.startswith(SERVICE_PATH)

    def route(self, stream: ClientStream) -> None:
        self.routed.append(stream)

    def finish(self, stream: ClientStream, block: bytes, headers: list[Header] | None) -> None:
        pass

    def call_done(self, stream: ClientStream) -> None:
        pass


class MemoryTransport:
    """Keeps what the connection writes; reading can be paused and resumed, nothing is closed."""

    def __init__(self) -> None:
        self.written: list[Any] = []
        self.reading = True
        self.closed = self.aborted = False
        #: Bytes the transport would still be holding for the peer (set by tests).
        self.buffered = 0

    def is_closing(self) -> bool:
        return self.closed

    def writelines(self, pieces: list[Any]) -> None:
        self.written += pieces

    def set_write_buffer_limits(self, high: int) -> None:
        pass

    def get_extra_info(self, name: str) -> None:
        return None

    def can_write_eof(self) -> bool:
        return False

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = self.aborted = True

    def get_write_buffer_size(self) -> int:
        return self.buffered

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True
