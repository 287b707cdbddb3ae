"""Stage 2: where the call's session lives — the affinity lookup.

Every call of a session must reach the driver that holds it. The lookup finds the session's route
on a live driver, or says why there is none: another user's session id (refused), a session the
gateway dropped (``SESSION_CHANGED``, or answered for calls that need no driver), a release of a
session that never reached a driver (answered), or a placement already under way (joined).
"""

from __future__ import annotations

import asyncio
import functools
import uuid
from dataclasses import dataclass

from sparkgate.clusters.base import Driver
from sparkgate.connect import status
from sparkgate.errors import BadRequest, PermissionDenied, Unavailable
from sparkgate.gateway.affinity import Route
from sparkgate.gateway.pipeline.call import Call, Caller
from sparkgate.gateway.pipeline.intents import Answer, Forward
from sparkgate.gateway.sessions import SessionBook

#: RPCs that only make sense for a session that already lives on a driver.
NEEDS_EXISTING = frozenset({"ReattachExecute", "CloneSession"})
#: RPCs a driver answers with an empty, successful response for a session it does not know.
NOOP_WITHOUT_SESSION = frozenset({"ReleaseSession", "ReleaseExecute", "Interrupt", "FetchErrorDetails"})
RELEASE = frozenset({"ReleaseSession", "ReleaseExecute"})


@dataclass(frozen=True, slots=True)
class Found:
    """The session lives on this driver."""

    route: Route
    driver: Driver


@dataclass(frozen=True, slots=True)
class Stale:
    """The session's route names a driver that is gone without a death report (after a restart,
    say): it is dropped like a reported death's, then :meth:`Lookup.unplaced` tells the caller."""

    route: Route


@dataclass(frozen=True, slots=True)
class Joining:
    """Another call of this new session is placing it: this one goes where that one does."""

    placement: asyncio.Future[Forward]


@functools.lru_cache(maxsize=4096)
def _is_uuid(session_id: str) -> bool:
    # Cached: every RPC of a session repeats its id, and parsing a UUID is a few microseconds.
    try:
        uuid.UUID(session_id)
    except ValueError:
        return False
    return True


def check_session_id(session_id: str) -> None:
    if not session_id:
        raise BadRequest("request has no session_id (field 1); is this a Spark Connect client?")
    if not _is_uuid(session_id):
        raise BadRequest(
            f"session_id {session_id[:80]!r} is not a UUID; Spark Connect session ids must be UUIDs "
            "(the sc:// parameter session_id=<uuid> sets one)"
        )


class Lookup:
    def __init__(self, book: SessionBook) -> None:
        self._book = book

    def find(self, call: Call, caller: Caller) -> Found | Stale | None:
        """The session's route on a live driver (None: it has none, see :meth:`unplaced`)."""
        session_id = call.ids.session_id
        check_session_id(session_id)
        book = self._book
        key = caller.key(call)
        route = book.store.get(key)
        return None if route is None else self._where(route)

    def _where(self, route: Route) -> Found | Stale:
        driver = self._book.live_driver(route)
        if driver is not None:
            return Found(route, driver)
        if self._book.driver_gone(route):
            return Stale(route)
        # Placed by another gateway on a driver this one has not adopted yet: not lost, not moved.
        raise Unavailable(
            f"session {route.session_id} is on driver {route.driver_id}, which this gateway does not know "
            "yet; retry shortly",
            retry_after_seconds=2.0,
        )

    async def load(self, call: Call, caller: Caller) -> Found | Stale | None:
        """:meth:`find` for a session this gateway does not know, asking the state other gateways
        share (a client that reconnected through this one)."""
        route = await self._book.store.load(caller.key(call))
        if route is None:
            return None
        where = self._where(route)
        if isinstance(where, Found):
            self._book.counted(route)
        return where

    def unplaced(self, call: Call, caller: Caller) -> Answer | Joining | None:
        """For a session without a route: an answer, a placement to join, or None (a new session)."""
        session_id, method = call.ids.session_id, call.method
        book = self._book
        key = caller.key(call)
        if book.store.users_of(session_id) - {caller.user_id}:
            # Someone else's session id: never let it reach the driver holding that session.
            raise PermissionDenied(
                f"session {session_id} belongs to another user; start your own session "
                "(a new SparkSession gets a new session id)"
            )
        lost = book.lost(key)
        if lost is not None:
            # Tell the client on every call, in the words both clients understand, instead of
            # silently placing it anew. Releasing or interrupting it needs nothing from a driver.
            if method in NOOP_WITHOUT_SESSION:
                if method == "ReleaseSession":
                    book.forget_lost(key)
                return Answer(method, session_id)
            raise status.session_changed(session_id, lost)
        if method in RELEASE:
            book.forget_held(key)
            return Answer(method, session_id)
        if method in NEEDS_EXISTING:
            raise status.session_not_found(session_id, "sparkgate has no driver for this session")
        placing = book.placing.get(key)
        return Joining(placing) if placing is not None else None
