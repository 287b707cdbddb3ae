"""Stage 5: a placed session's releases already on their way."""

from __future__ import annotations

import pytest

from sparkgate.clusters.manager import ClusterManager
from sparkgate.config import AuthSettings, RateLimitSettings, load_settings
from sparkgate.errors import ResourceExhausted
from sparkgate.gateway.pipeline.intents import Answer, Forward
from sparkgate.security.guard import Guard
from sparkgate.testing.fake_provider import FakeProvider
from tests.gateway.conftest import Rig
from tests.gateway.pipeline.conftest import TEAM, again, call


async def test_a_release_execute_during_a_release_session_is_answered(gw: Rig) -> None:
    f = await gw.resolve("ExecutePlan", TEAM, call().ids, b"")
    assert isinstance(f, Forward)
    c = call("ReleaseSession", session_id=f.route.session_id)
    assert gw.pipeline.releases.check(c, f.route) is None  # it goes to the driver
    assert gw.pipeline.releases.check(again(c, "ReleaseExecute"), f.route) == Answer("ReleaseExecute", c.ids.session_id)
    assert gw.pipeline.releases.check(again(c, "ReleaseSession"), f.route) is None  # a retry reaches it


async def test_a_release_refused_by_a_rate_limit_is_not_on_its_way() -> None:
    s = load_settings(None, {})
    cm = ClusterManager(FakeProvider(), pool_size=0)
    await cm.start()
    gw = Rig.make(s, cm, Guard(AuthSettings(), {}, RateLimitSettings(per_user_rps=0.001, per_user_burst=1)))
    f = await gw.resolve("ExecutePlan", TEAM, call().ids, b"")  # the one call the limit allows
    assert isinstance(f, Forward)
    with pytest.raises(ResourceExhausted):
        await gw.resolve("ReleaseSession", (), call(session_id=f.route.session_id).ids, b"")
    assert not gw.book.is_releasing(f.route.key)  # refused before it counted as on its way
    await cm.close()
