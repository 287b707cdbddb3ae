"""Fuzz target: the h2 engine's frame parser on a client connection.

Bytes from a client go through everything a client connection does with them (frames, HPACK,
streams, limits, reads left for later turns): no exception may escape it (a malformed frame ends in
a GOAWAY it writes), and cutting the same bytes into different reads must not change what it
writes back.

    python fuzz/h2_parser.py -max_total_time=600      # by hand, as long as you like
    python fuzz/h2_parser.py -max_total_time=8        # what the tests run (tests/gateway/h2/test_fuzz.py)
"""

from __future__ import annotations

import asyncio
import logging
import sys

import atheris

with atheris.instrument_imports(include=["sparkgate"]):
    from sparkgate.config import Http2Limits
    from sparkgate.gateway.h2 import frames as f
    from sparkgate.gateway.h2.downstream import ClientConnection
    from sparkgate.testing.h2_doubles import MemoryTransport, StubRouter


logging.disable(logging.CRITICAL)  # each malformed input logs its GOAWAY
LOOP = asyncio.new_event_loop()
asyncio.set_event_loop(LOOP)
#: Few frames per turn, so that reads are often left for later turns (the deferral is fuzzed too).
LIMITS = Http2Limits(frames_per_turn=7)


def one_input(data: bytes) -> None:
    LOOP.run_until_complete(check(data))


async def feed(body: bytes, cuts: list[int]) -> bytes:
    """``body`` read in pieces of ``cuts`` (then the rest) by a client connection; what it wrote."""
    conn = ClientConnection(StubRouter(), LIMITS)  # type: ignore[arg-type]
    transport = MemoryTransport()
    conn.connection_made(transport)  # type: ignore[arg-type]
    conn.data_received(f.PREFACE)
    pos = 0
    for piece in [*cuts, len(body)]:
        chunk = body[pos : pos + piece]
        pos += piece
        if not chunk:
            break
        while not transport.reading:  # a deferred read is still being handled: wait, as a socket would
            await asyncio.sleep(0)
        conn.data_received(memoryview(chunk))
    for _ in range(len(body) // 7 + 2):  # let deferred frames finish
        if transport.reading:
            break
        await asyncio.sleep(0)
    await asyncio.sleep(0)  # the last turn's writes
    return b"".join(bytes(p) for p in transport.written)


async def check(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    cuts = [fdp.ConsumeIntInRange(1, 64) for _ in range(fdp.ConsumeIntInRange(0, 8))]
    body = fdp.ConsumeBytes(fdp.remaining_bytes())
    # Errors are handled inside (a GOAWAY is written); anything escaping is a bug. And how the
    # bytes were cut into reads must not change what the connection answers.
    whole = await feed(body, [])
    pieces = await feed(body, cuts)
    if whole != pieces:
        raise AssertionError(f"answers differ with reads cut at {cuts}")


def main() -> None:
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
