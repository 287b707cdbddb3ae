"""Stage 2: where the call's session lives."""

from __future__ import annotations

import asyncio

import pytest

from sparkgate.clusters.base import DriverState
from sparkgate.errors import BadRequest, PermissionDenied, SessionLost
from sparkgate.gateway.pipeline.call import Caller
from sparkgate.gateway.pipeline.intents import Answer, Forward
from sparkgate.gateway.pipeline.lookup import Found, Joining, Stale
from sparkgate.security.identity import Identity
from tests.gateway.conftest import Rig
from tests.gateway.pipeline.conftest import TEAM, again, alice, call


async def placed(gw: Rig, method: str = "ExecutePlan") -> Forward:
    f = await gw.resolve(method, TEAM, call().ids, b"")
    assert isinstance(f, Forward)
    return f


async def test_a_placed_session_is_found_on_its_driver(gw: Rig) -> None:
    f = await placed(gw)
    c = call(session_id=f.route.session_id)
    found = gw.pipeline.lookup.find(c, alice(c))
    assert isinstance(found, Found) and found.driver is f.driver and found.route == f.route


async def test_a_new_session_has_no_route_and_a_bad_id_is_refused(gw: Rig) -> None:
    c = call()
    assert gw.pipeline.lookup.find(c, alice(c)) is None
    assert gw.pipeline.lookup.unplaced(c, alice(c)) is None  # a new session: route it
    bad = call(session_id="not-a-uuid")
    with pytest.raises(BadRequest, match="not a UUID"):
        gw.pipeline.lookup.find(bad, alice(bad))


async def test_a_route_to_a_driver_gone_is_stale(gw: Rig) -> None:
    f = await placed(gw)
    f.driver.state = DriverState.DEAD
    c = call(session_id=f.route.session_id)
    assert gw.pipeline.lookup.find(c, alice(c)) == Stale(f.route)


async def test_another_users_session_id_is_refused(gw: Rig) -> None:
    f = await placed(gw)
    c = call(session_id=f.route.session_id, user="mallory")
    mallory = Caller.of(Identity("mallory"), c.ids)
    assert gw.pipeline.lookup.find(c, mallory) is None
    with pytest.raises(PermissionDenied, match="belongs to another user"):
        gw.pipeline.lookup.unplaced(c, mallory)


async def test_a_lost_session_is_told_why_and_may_be_released(gw: Rig) -> None:
    f = await placed(gw)
    await gw.book.lose(f.route, "driver d1 died: exit 9")
    c = call(session_id=f.route.session_id)
    with pytest.raises(SessionLost, match="exit 9"):
        gw.pipeline.lookup.unplaced(c, alice(c))
    assert gw.pipeline.lookup.unplaced(again(c, "Interrupt"), alice(c)) == Answer("Interrupt", c.ids.session_id)
    assert isinstance(gw.pipeline.lookup.unplaced(again(c, "ReleaseSession"), alice(c)), Answer)
    assert gw.pipeline.lookup.unplaced(c, alice(c)) is None  # released: a new session may use the id


async def test_releases_and_reattaches_of_unknown_sessions(gw: Rig) -> None:
    c = call("ReleaseExecute")
    assert isinstance(gw.pipeline.lookup.unplaced(c, alice(c)), Answer)
    with pytest.raises(SessionLost, match="SESSION_NOT_FOUND"):
        gw.pipeline.lookup.unplaced(again(c, "ReattachExecute"), alice(c))


async def test_a_call_of_a_session_being_placed_joins_the_placement(gw: Rig) -> None:
    c = call()
    future: asyncio.Future[Forward] = asyncio.get_running_loop().create_future()
    gw.book.placing[(c.ids.user_id, c.ids.session_id)] = future
    joining = gw.pipeline.lookup.unplaced(c, alice(c))
    assert isinstance(joining, Joining) and joining.placement is future
