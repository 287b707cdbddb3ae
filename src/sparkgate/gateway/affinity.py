"""Session affinity: which driver each ``(user, session_id)`` lives on.

A Spark Connect session's state (temp views, confs, cached artifacts, running operations) exists
only on the driver that created it, so every RPC of a session — ReattachExecute, ReleaseExecute,
Interrupt, FetchErrorDetails and AddArtifacts included — must reach that driver.

The key is ``(user_id, session_id)``, the same pair the Spark Connect server keys sessions on
(``SessionKey``): a session id alone is not enough, since anyone who learned an id could then use
the session.

:class:`AffinityStore` is the pluggable part (memory here, SQLite in :mod:`.affinity_sqlite`,
Redis, shared by gateway replicas, in :mod:`.affinity_redis`). Lookups happen on every RPC, so
persistent stores keep an in-memory copy and write through; ``touch`` only marks a route as used
and is flushed in :meth:`AffinityStore.sweep`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from itertools import islice
from typing import Any, Protocol, runtime_checkable

SessionKey = tuple[str, str]  # (user_id, session_id)
#: Routes the sweep handles before it lets calls go on.
SWEEP_SLICE = 1000
#: Entries kept at most in what a gateway remembers about sessions (lost ones, releases in flight).
MAX_REMEMBERED = 100_000


def remember(seen: dict[SessionKey, Any], key: SessionKey, value: Any) -> None:
    """``seen[key] = value``, forgetting the oldest entries beyond :data:`MAX_REMEMBERED`."""
    seen[key] = value
    while len(seen) > MAX_REMEMBERED:
        seen.pop(next(iter(seen)))


@dataclass(frozen=True, slots=True)
class Route:
    user_id: str
    session_id: str
    driver_id: str
    #: ``host:port`` of the driver when the route was made (for diagnostics).
    address: str
    team: str
    environment: str
    #: Who created the session (the authenticated identity when auth is on).
    owner: str = ""
    created_at: float = field(default_factory=time.time)
    last_used: float = field(default_factory=time.time)

    @property
    def key(self) -> SessionKey:
        return (self.user_id, self.session_id)

    def audit_fields(self) -> dict[str, str]:
        """Who and where, for an audit record about this session."""
        return {
            "who": self.owner or self.user_id,
            "team": self.team,
            "environment": self.environment,
            "session": self.session_id,
            "driver": self.driver_id,
        }


@runtime_checkable
class AffinityStore(Protocol):
    #: Other gateways write routes too: a session missing here may have a route there (:meth:`load`).
    shared: bool
    #: Called with a route this gateway knew that another gateway dropped (shared stores only).
    on_evicted: Callable[[Route], None] | None

    async def __aenter__(self) -> AffinityStore: ...

    async def __aexit__(self, *exc: object) -> None: ...

    def get(self, key: SessionKey) -> Route | None:
        """The route for a session, or None. Must be fast: it runs on every RPC."""
        ...

    def touch(self, key: SessionKey, now: float) -> None:
        """Mark a route as used (persisted lazily by :meth:`sweep`)."""
        ...

    async def load(self, key: SessionKey) -> Route | None:
        """The route for a session, asking the shared state if this gateway does not know it."""
        ...

    async def create(self, route: Route) -> tuple[Route, bool]:
        """Record a new route unless the session already has one: the route in force after, and
        whether this call created it."""
        ...

    def lost(self, key: SessionKey) -> str | None:
        """Why another gateway dropped this session, if the shared state says so (read by :meth:`load`)."""
        ...

    async def delete(
        self, key: SessionKey, *, driver_id: str = "", lost: str = "", lost_ttl: float = 0.0
    ) -> Route | None:
        """Drop the session's route (only if it is on ``driver_id``, when given); with ``lost``,
        other gateways tell the session's next calls why, for ``lost_ttl`` seconds."""
        ...

    def users_of(self, session_id: str) -> set[str]:
        """User ids with a route for this session id (more than one only if someone reused an id)."""
        ...

    async def sweep(self, idle_before: float, *, lost: str = "", lost_ttl: float = 0.0) -> list[Route]:
        """Drop routes unused since ``idle_before`` (epoch seconds); return what was dropped
        (``lost``, ``lost_ttl``: as for :meth:`delete`)."""
        ...

    def all(self) -> list[Route]: ...

    async def reachable(self) -> bool:
        """Whether new sessions can be recorded now (a shared store answers)."""
        ...

    async def replicas(self, me: dict[str, Any], ttl: float) -> list[dict[str, Any]]:
        """Announce this gateway (``me``; to the others sharing the store, for ``ttl`` seconds)
        and list the gateways alive, this one included."""
        ...

    async def leave(self, replica_id: str) -> int:
        """Stop announcing this gateway (it is shutting down); how many others are alive."""
        ...


class MemoryAffinityStore:
    """Routes in a dict: fastest, gone when the gateway stops."""

    shared = False
    on_evicted: Callable[[Route], None] | None = None

    def __init__(self) -> None:
        self._routes: dict[SessionKey, Route] = {}
        self._touched: dict[SessionKey, float] = {}
        #: Last use of routes used since they were stored (kept apart: no route rebuilt per sweep).
        self._last: dict[SessionKey, float] = {}
        self._users: dict[str, set[str]] = {}  # session id -> user ids with a route for it

    async def __aenter__(self) -> MemoryAffinityStore:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    def get(self, key: SessionKey) -> Route | None:
        return self._routes.get(key)

    def touch(self, key: SessionKey, now: float) -> None:
        if key in self._routes:
            self._touched[key] = now

    async def load(self, key: SessionKey) -> Route | None:
        return self._routes.get(key)

    def lost(self, key: SessionKey) -> str | None:
        return None  # (no other gateway shares these routes)

    async def create(self, route: Route) -> tuple[Route, bool]:
        existing = self._routes.get(route.key)
        if existing is not None:
            return existing, False
        await self.put(route)
        return route, True

    async def put(self, route: Route) -> None:
        self._add(route)
        self._touched.pop(route.key, None)

    async def delete(
        self, key: SessionKey, *, driver_id: str = "", lost: str = "", lost_ttl: float = 0.0
    ) -> Route | None:
        current = self._routes.get(key)
        if current is None or (driver_id and current.driver_id != driver_id):
            return None
        self._touched.pop(key, None)
        return self._remove(key)

    def users_of(self, session_id: str) -> set[str]:
        return self._users.get(session_id, set())

    def _add(self, route: Route) -> None:
        self._routes[route.key] = route
        self._last.pop(route.key, None)
        self._users.setdefault(route.session_id, set()).add(route.user_id)

    def _remove(self, key: SessionKey) -> Route | None:
        route = self._routes.pop(key, None)
        last = self._last.pop(key, None)
        if route is not None and last is not None and last > route.last_used:
            route = replace(route, last_used=last)
        if route is not None:
            users = self._users.get(route.session_id)
            if users is not None:
                users.discard(route.user_id)
                if not users:
                    del self._users[route.session_id]
        return route

    def _apply_touches(self) -> dict[SessionKey, float]:
        touched, self._touched = self._touched, {}
        self._note_use(list(touched.items()))
        return touched

    def _note_use(self, items: list[tuple[SessionKey, float]]) -> None:
        routes, last = self._routes, self._last
        for key, ts in items:
            if key in routes and ts > last.get(key, 0.0):
                last[key] = ts

    async def _apply_touches_in_slices(self) -> dict[SessionKey, float]:
        """:meth:`_apply_touches`, yielding to calls every :data:`SWEEP_SLICE` routes."""
        touched, self._touched = self._touched, {}
        items = iter(touched.items())  # (no one else holds ``touched`` now: safe across the awaits)
        while chunk := list(islice(items, SWEEP_SLICE)):
            self._note_use(chunk)
            await asyncio.sleep(0)
        return touched

    async def _idle_in_slices(self, idle_before: float) -> list[Route]:
        """Routes unused since ``idle_before``, found :data:`SWEEP_SLICE` at a time (calls go on
        in between: one touched meanwhile is not idle)."""
        routes, last = list(self._routes.values()), self._last
        idle: list[Route] = []
        for start in range(0, len(routes), SWEEP_SLICE):
            idle += [
                r for r in routes[start : start + SWEEP_SLICE] if max(r.last_used, last.get(r.key, 0.0)) < idle_before
            ]
            await asyncio.sleep(0)
        return [r for r in idle if r.key not in self._touched and self._routes.get(r.key) is r]

    async def sweep(self, idle_before: float, *, lost: str = "", lost_ttl: float = 0.0) -> list[Route]:
        """Drop idle routes. Never long on the event loop: with 100k sessions, calls wait for it
        no more than one slice (a few milliseconds)."""
        await self._apply_touches_in_slices()
        dead = await self._idle_in_slices(idle_before)
        for r in dead:
            self._remove(r.key)
        return dead

    def all(self) -> list[Route]:
        """Every route, with its last use as of the last sweep."""
        last = self._last
        return [
            replace(r, last_used=t) if (t := last.get(k, 0.0)) > r.last_used else r for k, r in self._routes.items()
        ]

    async def reachable(self) -> bool:
        return True

    async def replicas(self, me: dict[str, Any], ttl: float) -> list[dict[str, Any]]:
        return [me]

    async def leave(self, replica_id: str) -> int:
        return 0
