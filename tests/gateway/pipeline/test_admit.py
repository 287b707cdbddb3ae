"""Stage 4: authorization and rate limits."""

from __future__ import annotations

import pytest

from sparkgate.config import AuthSettings, RateLimitSettings
from sparkgate.errors import PermissionDenied, ResourceExhausted
from sparkgate.gateway.affinity import Route
from sparkgate.gateway.pipeline.admit import Admit
from sparkgate.gateway.pipeline.call import Caller
from sparkgate.gateway.routing import RoutingInfo
from sparkgate.security.guard import Guard
from sparkgate.security.identity import Identity
from tests.gateway.pipeline.conftest import Tokens, call


def test_a_new_session_needs_the_teams_group() -> None:
    admit = Admit(Guard(AuthSettings(mode="static"), {}, RateLimitSettings(), authenticator=Tokens()))
    c = call()
    member = Caller.of(Identity("bob", frozenset({"fe"}), "token"), c.ids)
    admit.new(member, RoutingInfo("fe", "prod"))
    with pytest.raises(PermissionDenied, match="'ds'"):
        admit.new(member, RoutingInfo("ds", "prod"))


def test_every_call_counts_against_the_rate_limits() -> None:
    admit = Admit(Guard(AuthSettings(), {}, RateLimitSettings(per_user_rps=0.001, per_user_burst=2)))
    c = call()
    caller = Caller.of(Identity("alice"), c.ids)
    route = Route("alice", c.ids.session_id, "d1", "127.0.0.1:1", "fe", "prod")
    admit.new(caller, RoutingInfo("fe", "prod"))
    admit.existing(caller, route)
    with pytest.raises(ResourceExhausted):
        admit.existing(caller, route)
