"""Stage 6: what a call's answer changes."""

from __future__ import annotations

import uuid

from sparkgate.connect import wire
from sparkgate.gateway.affinity import Route
from sparkgate.gateway.pipeline.intents import Forward
from tests.gateway.conftest import Rig
from tests.gateway.pipeline.conftest import TEAM, call


async def placed(gw: Rig) -> Forward:
    f = await gw.resolve("ExecutePlan", TEAM, call().ids, b"")
    assert isinstance(f, Forward)
    return f


async def test_a_release_drops_the_route_whatever_its_status(gw: Rig) -> None:
    released: list[Route] = []
    gw.book.hook.session_released = released.append  # type: ignore[method-assign]
    f = await placed(gw)
    assert gw.pipeline.after_call.applies("ReleaseSession") and not gw.pipeline.after_call.applies("ExecutePlan")
    await gw.pipeline.after_call.run("ReleaseSession", f.route, wire.RequestIds(f.route.session_id), None, b"")
    assert gw.book.store.get(f.route.key) is None and f.driver.sessions == 0 and released == [f.route]


async def test_a_clone_lives_on_its_sources_driver(gw: Rig) -> None:
    f = await placed(gw)
    ids = wire.RequestIds(f.route.session_id, "alice")
    clone = str(uuid.uuid4())
    response = wire.encode_string(3, clone)  # CloneSessionResponse.new_session_id
    assert gw.pipeline.after_call.reads_response("CloneSession")
    await gw.pipeline.after_call.run("CloneSession", f.route, ids, 0, response)
    copy = gw.book.store.get(("alice", clone))
    assert copy is not None and copy.driver_id == f.driver.id and f.driver.sessions == 2


async def test_a_failed_clone_changes_nothing(gw: Rig) -> None:
    f = await placed(gw)
    clone = str(uuid.uuid4())
    ids = wire.RequestIds(f.route.session_id, "alice", new_session_id=clone)
    await gw.pipeline.after_call.run("CloneSession", f.route, ids, 5, b"")
    assert gw.book.store.get(("alice", clone)) is None and f.driver.sessions == 1
