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

import atheris

with atheris.instrument_imports(include=["sparkgate"]):
    from sparkgate.config import Http2Limits
    from sparkgate.gateway.h2 import frames as f
    from sparkgate.gateway.h2.downstream import ClientConnection
    from sparkgate.gateway.h2.frames import H2Error
    from sparkgate.gateway.h2.hpack import HpackError
    from sparkgate.testing.h2_doubles import MemoryTransport, StubRouter


LOOP = asyncio.new_event_loop()
asyncio.set_event_loop(LOOP)
LIMITS = Http2Limits(frames_per_turn=1 << 30)  # no deferral: every frame is parsed in this call


def one_input(data: bytes) -> None:
    LOOP.run_until_complete(feed(data))


async def feed(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    cuts = [fdp.ConsumeIntInRange(1, 64) for _ in range(fdp.ConsumeIntInRange(0, 8))]
    body = fdp.ConsumeBytes(fdp.remaining_bytes())
    conn = ClientConnection(StubRouter(), LIMITS)  # type: ignore[arg-type]
    conn.connection_made(MemoryTransport())  # type: ignore[arg-type]
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
