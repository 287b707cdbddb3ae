"""The pipeline as a whole: stages in order, each once; one hook sees every decision."""

from __future__ import annotations

from typing import Any

from sparkgate.clusters.manager import ClusterManager
from sparkgate.config import AuthSettings, RateLimitSettings, load_settings
from sparkgate.errors import PermissionDenied, Unauthenticated
from sparkgate.gateway.pipeline.call import Call
from sparkgate.gateway.pipeline.hook import PipelineHook
from sparkgate.gateway.pipeline.intents import Answer, Decided, Forward, Refuse, Wait
from sparkgate.security.guard import Guard
from sparkgate.security.identity import Identity
from sparkgate.testing.fake_provider import FakeProvider
from tests.gateway.conftest import Rig
from tests.gateway.pipeline.conftest import TEAM, Tokens, again, call

STAGES = {
    "identify": ("now", "verify"),
    "lookup": ("find", "unplaced"),
    "routing": ("read",),
    "admit": ("existing", "new"),
    "releases": ("check",),
    "placement": ("place", "join"),
}


def trace(gw: Rig) -> list[str]:
    """Record each stage method the pipeline calls, in order."""
    seen: list[str] = []
    for stage, methods in STAGES.items():
        obj = getattr(gw.pipeline, stage)
        for name in methods:
            real = getattr(obj, name)

            def traced(*args: Any, _real: Any = real, _name: str = f"{stage}.{name}") -> Any:
                seen.append(_name)
                return _real(*args)

            setattr(obj, name, traced)
    return seen


class Recorder(PipelineHook):
    def __init__(self) -> None:
        self.decisions: list[tuple[str, str | None, Decided]] = []

    def decided(self, call: Call, identity: Identity | None, decision: Decided) -> None:
        self.decisions.append((call.method, identity.subject if identity else None, decision))


async def test_a_new_session_visits_each_stage_once_in_order(gw: Rig) -> None:
    seen = trace(gw)
    c = call(metadata=TEAM)
    assert isinstance(await gw.resolve(c.method, c.metadata, c.ids, b""), Forward)
    assert seen == ["identify.now", "lookup.find", "lookup.unplaced", "routing.read", "admit.new", "placement.place"]
    seen.clear()
    intent = gw.pipeline.decide(again(c, "AnalyzePlan"))  # a placed session: decided at once
    assert isinstance(intent, Forward) and seen == ["identify.now", "lookup.find", "admit.existing"]
    seen.clear()
    assert isinstance(gw.pipeline.decide(again(c, "ReleaseSession")), Forward)
    assert seen == ["identify.now", "lookup.find", "admit.existing", "releases.check"]


async def test_the_hook_sees_every_decision_once() -> None:
    s = load_settings(None, {})
    cm = ClusterManager(FakeProvider(), pool_size=0)
    await cm.start()
    guard = Guard(AuthSettings(mode="static"), {}, RateLimitSettings(), authenticator=Tokens())
    gw = Rig.make(s, cm, guard)
    hook = gw.book.hook = gw.pipeline.hook = Recorder()
    token = (("authorization", "Bearer t-bob"),)
    new = call(metadata=(*TEAM, *token))
    placed = await gw.pipeline.decide_now(new)  # verified (waits), then placed (waits)
    known = gw.pipeline.decide(again(new, "ExecutePlan", token))  # then known at once
    denied = await gw.pipeline.decide_now(call(metadata=(("x-doordash-team", "ds"), TEAM[1], *token)))
    anonymous = await gw.pipeline.decide_now(call(metadata=TEAM))
    released = await gw.pipeline.decide_now(call("ReleaseSession", token))
    assert isinstance(placed, Forward) and placed.new and placed.route.owner == "bob"
    assert isinstance(known, Forward) and not known.new
    assert isinstance(denied, Refuse) and isinstance(denied.error, PermissionDenied)
    assert isinstance(anonymous, Refuse) and isinstance(anonymous.error, Unauthenticated)
    assert isinstance(released, Answer)
    assert hook.decisions == [
        ("ExecutePlan", "bob", placed),
        ("ExecutePlan", "bob", known),
        ("ExecutePlan", "bob", denied),
        ("ExecutePlan", None, anonymous),
        ("ReleaseSession", "bob", released),
    ]
    await cm.close()


async def test_what_must_wait_comes_back_as_wait(gw: Rig) -> None:
    c = call(metadata=TEAM)
    intent = gw.pipeline.decide(c)
    assert isinstance(intent, Wait)  # placing the session waits for a driver
    decided = await intent.decision
    assert isinstance(decided, Forward) and decided.new
    assert isinstance(gw.pipeline.decide(again(c, "ExecutePlan")), Forward)  # its next calls do not wait
