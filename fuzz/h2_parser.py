"""Fuzz target: the h2 engine's frame parser on a client connection.

Bytes from a client, cut into reads at fuzzer-chosen places, go through everything a client
connection does with them (frames, HPACK, streams, limits); the only outcomes allowed are handling
them or a connection error the RFC names (``H2Error``, ``HpackError``). Anything else is a bug.

    python fuzz/h2_parser.py -max_total_time=600      # by hand, as long as you like
    python fuzz/h2_parser.py -max_total_time=8        # what the tests run (tests/gateway/h2/test_fuzz.py)
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import atheris

with atheris.instrument_imports(include=["sparkgate"]):
    from sparkgate.config import Http2Limits
    from sparkgate.gateway.h2 import frames as f
    from sparkgate.gateway.h2.downstream import ClientConnection, ClientStream
    from sparkgate.gateway.h2.frames import H2Error
    from sparkgate.gateway.h2.hpack import Header, HpackError


class Router:
    max_message_bytes = 1 << 20

    def known_path(self, path: str) -> bool:
        return path.startswith("/spark.connect.SparkConnectService/")

    def route(self, stream: ClientStream) -> None:
        stream.fail(14, "no driver here")

    def finish(self, stream: ClientStream, block: bytes, headers: list[Header] | None) -> None:
        pass

    def call_done(self, stream: ClientStream) -> None:
        pass


class Transport:
    def __init__(self) -> None:
        self.written = 0

    def is_closing(self) -> bool:
        return False

    def writelines(self, pieces: list[Any]) -> None:
        self.written += sum(len(p) for p in pieces)

    def set_write_buffer_limits(self, high: int) -> None:
        pass

    def get_extra_info(self, name: str) -> None:
        return None

    def can_write_eof(self) -> bool:
        return False

    def close(self) -> None:
        pass

    def abort(self) -> None:
        pass

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


LOOP = asyncio.new_event_loop()
asyncio.set_event_loop(LOOP)
LIMITS = Http2Limits(frames_per_turn=1 << 30)  # no deferral: every frame is parsed in this call


def one_input(data: bytes) -> None:
    LOOP.run_until_complete(feed(data))


async def feed(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    cuts = [fdp.ConsumeIntInRange(1, 64) for _ in range(fdp.ConsumeIntInRange(0, 8))]
    body = fdp.ConsumeBytes(fdp.remaining_bytes())
    conn = ClientConnection(Router(), LIMITS)  # type: ignore[arg-type]
    conn.connection_made(Transport())  # type: ignore[arg-type]
    conn.data_received(f.PREFACE)
    pos = 0
    for piece in [*cuts, len(body)]:
        chunk = body[pos : pos + piece]
        pos += piece
        if not chunk:
            break
        try:
            conn._parse(memoryview(chunk))
        except (H2Error, HpackError):
            return


def main() -> None:
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
