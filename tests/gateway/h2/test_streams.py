"""Large result streams through the h2 engine: whole and in order, whoever reads slowly.

Result streams of 1 MiB messages share one driver connection; every message must arrive whole and
in order, and a client that reads slowly (or not at all) must neither corrupt its stream nor hold
up other sessions on the same driver (flow control is per stream).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import grpc.aio

from sparkgate.clusters.manager import ClusterManager
from sparkgate.clusters.static import StaticProvider
from sparkgate.config import load_settings
from sparkgate.connect import wire
from sparkgate.gateway.server import Gateway
from sparkgate.testing.fake_backend import FakeSparkConnectServer

SVC = "/spark.connect.SparkConnectService/"
ROUTE = (("x-doordash-team", "fe"), ("x-doordash-environment", "prod"))
CHUNK = 1024 * 1024
CHUNKS = 24


@contextlib.asynccontextmanager
async def relay(tmp_path: Path, **gateway: Any) -> AsyncIterator[tuple[Gateway, FakeSparkConnectServer]]:
    async with FakeSparkConnectServer(chunks=CHUNKS, chunk_bytes=CHUNK) as fake:
        gw = {"host": "127.0.0.1", "port": 0, "affinity": {"backend": "memory"}, **gateway}
        settings = load_settings(None, {}, gateway=gw, state_dir=tmp_path)
        cm = ClusterManager(StaticProvider([fake.address]), pool_size=0, sessions_per_driver=1000)
        await cm.start()
        async with Gateway(settings, cm) as g:
            yield g, fake


def channel(gw: Gateway) -> grpc.aio.Channel:
    big = 64 * 1024 * 1024
    options = [("grpc.max_receive_message_length", big), ("grpc.max_send_message_length", big)]
    return grpc.aio.insecure_channel(f"127.0.0.1:{gw.port}", options=options)


def execute(ch: grpc.aio.Channel, *extra: tuple[str, str]) -> Any:
    sid = str(uuid.uuid4())
    req = wire.encode_string(1, sid) + wire.encode_string(2, wire.encode_string(1, "alice"))
    return ch.unary_stream(SVC + "ExecutePlan")(req, metadata=(*ROUTE, *extra))


def check(responses: list[bytes], chunks: int = CHUNKS, size: int = CHUNK) -> None:
    """Every message is whole and in order: ``r-0`` … with ``size`` bytes of 0xab, then the end."""
    assert len(responses) == chunks + 1
    for i, resp in enumerate(responses):
        assert wire.read_string_field(resp, 13) == f"r-{i}"
        if i < chunks:
            assert resp.endswith(b"\xab" * size)
            assert len(resp) - size < 200  # ids and framing only


async def test_a_large_result_arrives_whole_and_in_order(tmp_path: Path) -> None:
    async with relay(tmp_path) as (gw, _), channel(gw) as ch:
        check([r async for r in execute(ch)])


async def test_a_slow_reader_neither_corrupts_its_stream_nor_holds_up_others(tmp_path: Path) -> None:
    async with relay(tmp_path) as (gw, _), channel(gw) as slow_ch, channel(gw) as fast_ch:
        slow_call = execute(slow_ch)
        slow: list[bytes] = []

        async def read_slowly() -> float:
            async for r in slow_call:
                slow.append(r)
                await asyncio.sleep(0.05)
            return time.monotonic()

        slow_task = asyncio.create_task(read_slowly())
        await asyncio.sleep(0.3)  # the slow stream is well under way, its client's windows full
        fast = [r async for r in execute(fast_ch)]
        fast_done = time.monotonic()
        # A unary call on another session, on the same driver connection, is answered too.
        sid = str(uuid.uuid4())
        req = wire.encode_string(1, sid) + wire.encode_string(2, wire.encode_string(1, "bob"))
        resp = await asyncio.wait_for(fast_ch.unary_unary(SVC + "Config")(req, metadata=ROUTE), 10)
        assert wire.read_string_field(resp, 1) == sid
        slow_done = await asyncio.wait_for(slow_task, 60)
        check(fast)
        check(slow)
        assert fast_done < slow_done


async def test_a_stalled_reader_does_not_block_the_driver_connection(tmp_path: Path) -> None:
    async with relay(tmp_path) as (gw, fake), channel(gw) as stalled_ch, channel(gw) as other_ch:
        stalled = execute(stalled_ch)
        first = await stalled.read()  # then reads nothing for a while: its windows fill up
        await asyncio.sleep(0.5)
        other = [r async for r in execute(other_ch)]
        check(other)
        rest = []
        while (r := await stalled.read()) is not grpc.aio.EOF:
            rest.append(r)
        check([first, *rest])
        assert len(fake.calls_of("ExecutePlan")) == 2


async def test_a_client_cancelling_mid_stream_leaves_the_relay_serving(tmp_path: Path) -> None:
    async with relay(tmp_path) as (gw, fake), channel(gw) as ch:
        call = execute(ch, ("x-fake-chunks", "1000"), ("x-fake-delay-ms", "5"))
        for _ in range(5):
            await call.read()
        call.cancel()
        assert await fake.wait_cancelled(5) == ["ExecutePlan"]
        check([r async for r in execute(ch)])


async def test_many_streams_of_mixed_sizes_speeds_and_cancels_stay_intact(tmp_path: Path) -> None:
    """Randomized (fixed seed): streams of every size share one driver connection."""
    import random

    rnd = random.Random(7)
    async with relay(tmp_path) as (gw, _):
        channels = [channel(gw) for _ in range(4)]

        async def one(ch: grpc.aio.Channel, k: int) -> None:
            chunks, size = rnd.randint(1, 12), rnd.choice([100, 20_000, 40_000, 300_000, 1_500_000])
            delay = rnd.choice([0, 0, 0.01])
            cancel_at = rnd.choice([None, None, None, rnd.randint(0, chunks)])
            call = execute(ch, ("x-fake-chunks", str(chunks)), ("x-fake-chunk-bytes", str(size)))
            got: list[bytes] = []
            async for r in call:
                got.append(r)
                if cancel_at is not None and len(got) > cancel_at:
                    call.cancel()
                    return
                if delay:
                    await asyncio.sleep(delay)
            check(got, chunks, size)
            if k % 3 == 0:  # a unary call on the same connection between streams
                sid = str(uuid.uuid4())
                req = wire.encode_string(1, sid) + wire.encode_string(2, wire.encode_string(1, "alice"))
                resp = await ch.unary_unary(SVC + "Config")(req, metadata=ROUTE)
                assert wire.read_string_field(resp, 1) == sid

        try:
            for _ in range(3):
                await asyncio.wait_for(
                    asyncio.gather(*(one(channels[i % 4], i) for i in range(12))),
                    120,
                )
        finally:
            for ch in channels:
                await ch.close()
