"""Stage 6, for a new session: place it on a driver of its team and environment.

The cluster manager picks the driver (least-loaded ready driver first, starting one if none has
room); the session's route is recorded before the call goes out, so its next calls follow it.
Calls of the same session arriving meanwhile join this placement instead of making another.

:meth:`Placement.failover` places a new session again, away from a driver its first call failed on
before any response.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Awaitable

from sparkgate.clusters.base import Driver
from sparkgate.config import GatewaySettings
from sparkgate.errors import Unavailable
from sparkgate.gateway.affinity import Route, SessionKey
from sparkgate.gateway.pipeline.call import Call, Caller
from sparkgate.gateway.pipeline.intents import Forward
from sparkgate.gateway.routing import RoutingInfo
from sparkgate.gateway.sessions import SessionBook

log = logging.getLogger(__name__)


class Placement:
    def __init__(self, settings: GatewaySettings, book: SessionBook) -> None:
        self._settings = settings
        self._book = book

    def place(self, call: Call, caller: Caller, info: RoutingInfo) -> Awaitable[Forward]:
        """Start placing the session: from now on its other calls join this placement.

        The placement runs as a task of its own: it finishes (and records the route, or its
        failure) whatever becomes of the call that started it. The returned awaitable gives the
        :class:`Forward` of this call.
        """
        key = caller.key(call)
        placement = asyncio.get_running_loop().create_task(self._place(call, caller, info))
        self._book.placing[key] = placement
        placement.add_done_callback(lambda done: self._placed(key, done))
        return _placed_as(placement, caller, first=True)

    def _placed(self, key: SessionKey, placement: asyncio.Task[Forward]) -> None:
        if self._book.placing.get(key) is placement:
            del self._book.placing[key]
        if not placement.cancelled():
            placement.exception()  # mark retrieved: the calls waiting on it re-raise it themselves

    async def _place(self, call: Call, caller: Caller, info: RoutingInfo) -> Forward:
        book = self._book
        ids = call.ids
        key = caller.key(call)
        identity = caller.identity
        driver = await self._acquire(info.team, info.environment)
        route = Route(
            user_id=caller.user_id,
            session_id=ids.session_id,
            driver_id=driver.id,
            address=driver.address,
            team=info.team,
            environment=info.environment,
            owner=identity.subject if identity.verified else (info.user or ids.user_id),
        )
        route, created = await book.add(route)
        driver = self._driver_of(route, driver)
        log.info(
            "session %s (user %s, team %s, env %s) -> driver %s",
            ids.session_id,
            caller.user_id or "-",
            info.team,
            info.environment,
            driver.id,
        )
        # Only the call whose placement created the route may move it to another driver (failover).
        return Forward(driver, route, book.take_held(key), new=created, rewrite_user=caller.rewrite_user)

    def _driver_of(self, placed: Route, mine: Driver) -> Driver:
        """The driver of the route in force: ``mine``, or the one another gateway placed it on."""
        if placed.driver_id == mine.id:
            return mine
        other = self._book.live_driver(placed)
        if other is None:
            raise Unavailable(
                f"session {placed.session_id} was placed by another gateway on driver {placed.driver_id}, "
                "which this gateway does not know yet; retry shortly",
                retry_after_seconds=2.0,
            )
        return other

    @staticmethod
    def join(placement: asyncio.Future[Forward], caller: Caller) -> Awaitable[Forward]:
        """Another call of a session being placed: it goes where the placement puts it."""
        return _placed_as(placement, caller, first=False)

    async def failover(self, failed: Forward, why: str) -> Forward:
        """A new session's first call failed on its driver before any response: place it on another.

        Nothing of the session exists anywhere yet (the driver never answered), so it is placed
        afresh, away from every driver it already failed on; the failed driver is probed at once.
        """
        book = self._book
        route = failed.route
        await book.remove(route)
        book.clusters.report_unreachable(route.driver_id)
        tried = failed.tried | {failed.driver.id}
        log.warning(
            "session %s: first call failed on driver %s before any response (%s); placing it on another driver",
            route.session_id,
            failed.driver.id,
            why,
        )
        driver = await self._acquire(route.team, route.environment, exclude=tried)
        moved, created = await book.add(dataclasses.replace(route, driver_id=driver.id, address=driver.address))
        driver = self._driver_of(moved, driver)
        log.info("session %s -> driver %s (failover)", route.session_id, driver.id)
        return dataclasses.replace(failed, driver=driver, route=moved, tried=tried, new=created)

    async def _acquire(self, team: str, environment: str, exclude: frozenset[str] = frozenset()) -> Driver:
        wait = self._settings.driver_wait_seconds
        try:
            return await asyncio.wait_for(self._book.clusters.acquire(team, environment, exclude=exclude), wait)
        except TimeoutError:
            raise Unavailable(
                f"no driver for team {team!r} in {environment!r} became ready within {wait:.0f}s; "
                "one is still starting, retry shortly",
                retry_after_seconds=5.0,
            ) from None


async def _placed_as(placement: asyncio.Future[Forward], caller: Caller, *, first: bool) -> Forward:
    """Where a call goes once the placement is done (``first``: the call that started it, which
    carries the held options and may fail over)."""
    try:
        placed = await asyncio.shield(placement)
    except asyncio.CancelledError:
        if placement.cancelled():  # the gateway is stopping: this call did not end by itself
            raise Unavailable("the gateway stopped while placing this session; retry") from None
        raise
    if first:
        return placed
    return Forward(placed.driver, placed.route, rewrite_user=caller.rewrite_user)
