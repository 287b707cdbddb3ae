"""Stage 4: may this caller use this team's drivers now — authorization and rate limits.

A new session is checked against the caller's team and environment grants; every call against the
per-user and per-team rate limits.
"""

from __future__ import annotations

from sparkgate.gateway.affinity import Route
from sparkgate.gateway.pipeline.call import Caller
from sparkgate.gateway.routing import RoutingInfo
from sparkgate.security.guard import Guard


class Admit:
    def __init__(self, guard: Guard) -> None:
        self._authz = guard.authz
        self._limits = guard.limits

    def existing(self, caller: Caller, route: Route) -> None:
        """A call of a placed session (raises ResourceExhausted over a rate limit)."""
        if self._limits.enabled:
            self._limits.admit(caller.user_id, route.team)

    def new(self, caller: Caller, info: RoutingInfo) -> None:
        """The first call of a new session (raises PermissionDenied or ResourceExhausted)."""
        self._authz.check(caller.identity, info.team, info.environment)
        self._limits.admit(caller.user_id, info.team)
