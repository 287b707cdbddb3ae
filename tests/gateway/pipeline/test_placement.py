"""Stage 5: a new session placed on a driver."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine

import pytest

from sparkgate.clusters.manager import ClusterManager
from sparkgate.config import load_settings
from sparkgate.errors import Unavailable
from sparkgate.gateway.routing import PartialRouting, RoutingInfo
from sparkgate.testing.fake_provider import FakeProvider
from tests.gateway.conftest import Rig
from tests.gateway.pipeline.conftest import alice, call

FE = RoutingInfo("fe", "prod")


async def test_placing_records_the_route_before_the_call_goes_out(gw: Rig) -> None:
    c = call()
    key = ("alice", c.ids.session_id)
    gw.book.hold(key, PartialRouting(), [("a", "1")])
    placing = gw.pipeline.placement.place(c, alice(c), FE)
    assert key in gw.book.placing  # from now on, other calls of the session join it
    joined = asyncio.ensure_future(gw.pipeline.placement.join(gw.book.placing[key], alice(c)))
    f = await placing
    assert f.new and f.held_config == (("a", "1"),) and gw.book.store.get(key) == f.route
    assert f.route.team == "fe" and f.driver.sessions == 1 and key not in gw.book.placing
    other = await joined
    assert other.driver is f.driver and not other.new and other.held_config is None


async def test_failover_places_the_session_away_from_the_driver_that_failed(gw: Rig) -> None:
    c = call()
    f = await gw.pipeline.placement.place(c, alice(c), FE)
    moved = await gw.pipeline.placement.failover(f, "connection refused")
    assert moved.driver.id != f.driver.id and moved.tried == {f.driver.id} and moved.new
    assert gw.book.store.get(f.route.key) == moved.route and f.driver.sessions == 0
    assert moved.can_fail_over  # one more driver may be tried


async def test_no_driver_in_time_is_unavailable_and_joiners_hear_it() -> None:
    s = load_settings(None, {}, gateway={"driver_wait_seconds": 0.05})
    cm = ClusterManager(FakeProvider(start_delay=1.0), pool_size=0)
    await cm.start()
    gw = Rig.make(s, cm)
    c = call()
    placing = gw.pipeline.placement.place(c, alice(c), FE)
    joined = asyncio.ensure_future(gw.pipeline.placement.join(gw.book.placing[("alice", c.ids.session_id)], alice(c)))
    with pytest.raises(Unavailable, match="retry shortly"):
        await placing
    with pytest.raises(Unavailable):
        await joined
    assert gw.book.store.all() == [] and not gw.book.placing
    await cm.close()


async def test_a_placement_finishes_when_the_call_that_started_it_never_waits(gw: Rig) -> None:
    c = call()
    key = ("alice", c.ids.session_id)
    started = gw.pipeline.placement.place(c, alice(c), FE)
    assert isinstance(started, Coroutine)
    started.close()  # its call was cancelled before it ran (a gateway stopping, say)
    joined = await gw.pipeline.placement.join(gw.book.placing[key], alice(c))
    assert gw.book.store.get(key) == joined.route and key not in gw.book.placing
