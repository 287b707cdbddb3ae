"""Stage 4: may this caller use this team's drivers now — authorization and rate limits.

A new session is checked against the caller's team and environment grants; every call against the
per-user and per-team rate limits: this gateway's buckets (no wait), or with ``rate_limits.mode:
exact`` the buckets every replica shares (a round trip: the check comes back to be awaited) for
the calls of placed sessions.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Protocol

from sparkgate.gateway.affinity import Route
from sparkgate.gateway.pipeline.call import Caller
from sparkgate.gateway.routing import RoutingInfo
from sparkgate.security.guard import Guard


class SharedLimits(Protocol):
    """Rate limits counted over every replica."""

    @property
    def enabled(self) -> bool: ...

    async def admit(self, user: str, team: str) -> None:
        """Take a call from the user's and the team's buckets (raises ResourceExhausted)."""
        ...


class Admit:
    def __init__(self, guard: Guard, shared: SharedLimits | None = None) -> None:
        self._authz = guard.authz
        self._limits = guard.limits
        self._shared = shared if shared is not None and shared.enabled else None

    def existing(self, caller: Caller, route: Route) -> Awaitable[None] | None:
        """A call of a placed session (raises ResourceExhausted over a rate limit; with shared
        limits, returns the check to await)."""
        if self._shared is not None:
            return self._shared.admit(caller.user_id, route.team)
        if self._limits.enabled:
            self._limits.admit(caller.user_id, route.team)
        return None

    def new(self, caller: Caller, info: RoutingInfo) -> None:
        """The first call of a new session (raises PermissionDenied or ResourceExhausted). It is
        counted by this gateway's own buckets, also with shared limits: placement starts at once,
        so that the session's other first calls find it under way and wait for it."""
        self._authz.check(caller.identity, info.team, info.environment)
        self._limits.admit(caller.user_id, info.team)
