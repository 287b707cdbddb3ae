from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from sparkgate.gateway.affinity import SWEEP_SLICE, AffinityStore, MemoryAffinityStore, Route
from sparkgate.gateway.affinity_sqlite import SqliteAffinityStore


def _route(sid: str = "s1", user: str = "u", driver: str = "d1", used: float | None = None) -> Route:
    now = time.time() if used is None else used
    return Route(user, sid, driver, "127.0.0.1:1", "fe", "prod", owner=user, created_at=now, last_used=now)


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> AffinityStore:
    return MemoryAffinityStore() if request.param == "memory" else SqliteAffinityStore(tmp_path / "a.db")


async def test_put_get_delete(store: AffinityStore) -> None:
    async with store:
        await store.put(_route())
        assert store.get(("u", "s1")) is not None
        assert store.get(("other-user", "s1")) is None  # a session id alone is not a key
        assert (await store.delete(("u", "s1"))) is not None
        assert store.get(("u", "s1")) is None


async def test_sweep_drops_idle_and_keeps_touched(store: AffinityStore) -> None:
    old = time.time() - 100
    async with store:
        await store.put(_route("idle", used=old))
        await store.put(_route("busy", used=old))
        store.touch(("u", "busy"), time.time())
        dropped = await store.sweep(time.time() - 50)
        assert [r.session_id for r in dropped] == ["idle"]
        assert store.get(("u", "busy")) is not None


async def test_sqlite_routes_survive_restart(tmp_path: Path) -> None:
    path = tmp_path / "routes.db"
    async with SqliteAffinityStore(path) as s:
        await s.put(_route("a"))
        await s.put(_route("b"))
        await s.delete(("u", "b"))
        s.touch(("u", "a"), 12345678.0 + time.time())
    async with SqliteAffinityStore(path) as s2:
        r = s2.get(("u", "a"))
        assert r is not None and r.driver_id == "d1" and r.last_used > time.time()
        assert s2.get(("u", "b")) is None


async def test_the_sweep_lets_calls_go_on_every_slice_of_routes(store: AffinityStore) -> None:
    """Housekeeping never holds the event loop for long: with many sessions, calls are served
    between slices of the sweep (each a few milliseconds), and a route touched meanwhile stays."""
    n = SWEEP_SLICE * 5
    now = time.time()
    for i in range(n):
        await store.put(Route("u", f"s{i}", "d1", "x", "fe", "prod", last_used=now - 100))
        store.touch(("u", f"s{i}"), now - 60 if i % 2 else now)
    turns = 0
    stop = False

    async def calls() -> None:  # what the loop does for clients meanwhile
        nonlocal turns
        while not stop:
            turns += 1
            if turns == 3:
                store.touch(("u", "s1"), time.time())  # an idle session called again mid-sweep
            await asyncio.sleep(0)

    ticker = asyncio.ensure_future(calls())
    await asyncio.sleep(0)
    dead = await store.sweep(now - 30)
    stop = True
    await ticker
    assert turns >= 2 * n // SWEEP_SLICE  # served between slices of both passes
    assert len(dead) == n // 2 - 1 and store.get(("u", "s1")) is not None
