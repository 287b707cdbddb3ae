"""Where each request goes: the session router.

For every RPC the relay asks :meth:`SessionRouter.resolve`, which answers one of

* :class:`Forward` — send the bytes to this driver (with, for a brand-new session, a ``Config(Set)``
  *preamble* replaying options the gateway held while the session was not yet routable);
* :class:`Answer` — the gateway answers itself (a routing-only ``Config(Set)``, releasing a session
  that never reached a driver, ...);
* or it raises a :class:`~sparkgate.errors.SparkgateError` the relay turns into a gRPC status.

Routing-only Config(Set) calls exist because the JVM client sends one ``Config(Set)`` per builder
option: ``x-doordash-team`` and ``x-doordash-environment`` arrive in two RPCs, and nothing needs a
driver until both are known. The Python client sends all options in one Set, which is routable at once.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from sparkgate.clusters.base import Driver, DriverState
from sparkgate.clusters.manager import ClusterManager
from sparkgate.config import AuthSettings, GatewaySettings, RateLimitSettings
from sparkgate.connect import status, wire
from sparkgate.connect.probe import release_session
from sparkgate.errors import BadRequest, PermissionDenied, SparkgateError, Unauthenticated, Unavailable
from sparkgate.gateway.affinity import AffinityStore, Route, SessionKey
from sparkgate.gateway.routing import (
    PartialRouting,
    from_config_pairs,
    from_metadata,
    missing_routing_error,
    validate,
)
from sparkgate.gateway.telemetry import Telemetry
from sparkgate.security.guard import Guard
from sparkgate.security.identity import Identity

log = logging.getLogger(__name__)

Metadata = Sequence[tuple[str, str | bytes]]

# RPCs that only make sense for a session that already lives on a driver.
_NEEDS_EXISTING = {"ReattachExecute", "CloneSession"}
# RPCs a driver answers with an empty, successful response for a session it does not know.
# Releases are answered by the gateway without placing the session; Interrupt and FetchErrorDetails
# create the session on a real server, so they are placed like any first call when routable.
_NOOP_WITHOUT_SESSION = {"ReleaseSession", "ReleaseExecute", "Interrupt", "FetchErrorDetails"}
_RELEASE = {"ReleaseSession", "ReleaseExecute"}
#: Lost sessions remembered at most (each is a few hundred bytes); also releases in flight.
_MAX_LOST = 100_000
#: Seconds a forwarded ReleaseSession counts as in flight without an answer (then: forgotten).
_RELEASING_SECONDS = 60.0
#: Other drivers a new session's first call is tried on after its driver failed before answering.
FAILOVER_ATTEMPTS = 2


def _tolerates_local_answer(request: bytes | None) -> bool:
    """Whether the client survives a first response with no ``server_side_session_id``.

    The gateway answers a routing-only ``Config(Set)`` itself, without a driver, so its response
    has an empty server-side session id. The JVM client ignores empty ids (``ResponseValidator``).
    The Python client stores the first one it sees — even empty — and closes the session when the
    driver's real id arrives later (``_verify_response_integrity``), so for Python an incomplete
    Set is refused at once with the missing-routing error. (Python sends all builder options in
    one Set anyway: if that Set lacks the environment, the session can never be routed.)
    """
    client_type = wire.read_string_field(request, 4) if request else ""
    return " python/" not in client_type


@dataclass(frozen=True, slots=True)
class Forward:
    driver: Driver
    route: Route
    #: A serialized ConfigRequest to send first (options buffered before the session was routable).
    preamble: bytes | None = None
    #: This call placed the session: if it fails on the driver before any response, the relay may
    #: place the session on another driver (:meth:`SessionRouter.failover`) and send it again.
    new: bool = False
    #: Drivers this new session already failed on (excluded when it is placed again).
    tried: frozenset[str] = frozenset()
    #: With auth on: the identity the driver must see as ``user_context.user_id`` when the client
    #: sent another one (the relay rewrites the request; None: send it as it is).
    rewrite_user: str | None = None

    @property
    def can_fail_over(self) -> bool:
        return self.new and len(self.tried) < FAILOVER_ATTEMPTS


@dataclass(frozen=True, slots=True)
class Answer:
    response: bytes


@dataclass(slots=True)
class _Pending:
    """A session seen by the gateway that cannot be routed yet."""

    routing: PartialRouting
    pairs: list[tuple[str, str | None]] = field(default_factory=list)
    since: float = field(default_factory=time.monotonic)


@functools.lru_cache(maxsize=4096)
def _is_uuid(session_id: str) -> bool:
    # Cached: every RPC of a session repeats its id, and parsing a UUID is a few microseconds.
    try:
        uuid.UUID(session_id)
    except ValueError:
        return False
    return True


def _rewrite(who: Identity, ids: wire.RequestIds) -> str | None:
    """The user id to put in the request for the driver, if not the client's own."""
    return who.subject if who.verified and who.subject != ids.user_id else None


def _check_session_id(session_id: str) -> None:
    if not session_id:
        raise BadRequest("request has no session_id (field 1); is this a Spark Connect client?")
    if not _is_uuid(session_id):
        raise BadRequest(
            f"session_id {session_id[:80]!r} is not a UUID; Spark Connect session ids must be UUIDs "
            "(the sc:// parameter session_id=<uuid> sets one)"
        ) from None


class SessionRouter:
    def __init__(
        self,
        settings: GatewaySettings,
        environments: Mapping[str, object],
        store: AffinityStore,
        clusters: ClusterManager,
        guard: Guard | None = None,
    ) -> None:
        self._settings = settings
        self._headers = settings.headers
        self._environments = environments
        self.store = store
        self.clusters = clusters
        #: Authentication, authorization, rate limits and audit (default: auth.mode none).
        self.guard = guard or Guard(AuthSettings(), {}, RateLimitSettings())
        #: Metrics of finished calls (the relay reports to it).
        self.telemetry = Telemetry(audit=self.guard.audit)
        self._pending: dict[SessionKey, _Pending] = {}
        self._creating: dict[SessionKey, asyncio.Future[Forward]] = {}
        #: Sessions whose driver died: why, and when (kept for one session TTL, bounded).
        self._lost: dict[SessionKey, tuple[str, float]] = {}
        #: Sessions whose ReleaseSession went to the driver and has not been answered: since when.
        self._releasing: dict[SessionKey, float] = {}
        #: Open client connections that carried each session's calls (the relay reports them),
        #: and sessions whose every such connection was closed by its client: since when.
        self._carriers: dict[SessionKey, int] = {}
        self._gone: dict[SessionKey, float] = {}
        #: Calls relayed and not ended yet, per session: a session with one is not idle.
        self._in_flight: dict[SessionKey, int] = {}

    # -- lifecycle ----------------------------------------------------------------------------

    def restore(self) -> None:
        """Count restored routes against their drivers (after a gateway restart)."""
        for r in self.store.all():
            d = self.clusters.get(r.driver_id)
            if d is not None:
                self.clusters.attach(d)

    async def sweep(self) -> None:
        """Release idle sessions and those whose client left; forget stale pending sessions and
        releases that were never answered."""
        now = time.time()
        ttl = self._settings.affinity.session_ttl_seconds
        for key in self._in_flight:
            self.store.touch(key, now)  # a call still running: its session is not idle
        expired = []
        for r in await self.store.sweep(now - ttl):
            self.clusters.detach(r.driver_id)
            self._remember_lost(r.key, f"it was released after {ttl:g}s without a call", now)
            log.info("session %s of %s expired after idling", r.session_id, r.user_id or "-")
            expired.append(r)
        cutoff = time.monotonic() - self._settings.pending_ttl_seconds
        for key in [k for k, p in self._pending.items() if p.since < cutoff]:
            del self._pending[key]
        lost_cutoff = now - self._settings.affinity.session_ttl_seconds
        for key in [k for k, (_, at) in self._lost.items() if at < lost_cutoff]:
            del self._lost[key]
        releasing_cutoff = time.monotonic() - _RELEASING_SECONDS
        for key in [k for k, since in self._releasing.items() if since < releasing_cutoff]:
            del self._releasing[key]
        await self._release_on_drivers(expired + await self._drop_gone(now))

    # -- clients that left ----------------------------------------------------------------------

    def carried(self, key: SessionKey) -> None:
        """A client connection carried a call of this session (once per connection)."""
        self._carriers[key] = self._carriers.get(key, 0) + 1
        self._gone.pop(key, None)

    def connection_closed(self, keys: Iterable[SessionKey], *, by_client: bool) -> None:
        """A client connection that carried ``keys`` closed. If its client closed it (not the
        gateway: an idle timeout, a shutdown) and no other connection carries a session, the
        session is released after ``affinity.client_gone_seconds`` unless its client comes back."""
        now = time.monotonic()
        for key in keys:
            left = self._carriers.get(key, 0) - 1
            if left > 0:
                self._carriers[key] = left
                continue
            self._carriers.pop(key, None)
            if by_client and self.store.get(key) is not None:
                self._gone[key] = now

    def call_started(self, key: SessionKey) -> None:
        self._in_flight[key] = self._in_flight.get(key, 0) + 1

    def call_ended(self, key: SessionKey) -> None:
        left = self._in_flight.get(key, 0) - 1
        if left > 0:
            self._in_flight[key] = left
        else:
            self._in_flight.pop(key, None)

    async def _drop_gone(self, now: float) -> list[Route]:
        """Drop the routes of sessions whose client left ``client_gone_seconds`` ago and has not
        called since (nor has a call still running)."""
        wait = self._settings.affinity.client_gone_seconds
        cutoff = time.monotonic() - wait
        routes = []
        for key in [k for k, since in self._gone.items() if since < cutoff]:
            del self._gone[key]
            route = self.store.get(key)
            if route is None or key in self._carriers or key in self._in_flight:
                continue
            # Told first: a call arriving while the route is deleted gets this, not a new session.
            self._remember_lost(key, f"it was released {wait:g}s after its client closed its connection", now)
            if await self.store.delete(key) is None:
                continue
            self.clusters.detach(route.driver_id)
            routes.append(route)
            log.info(
                "session %s of %s released: its client left %gs ago and has not called since",
                route.session_id,
                route.user_id or "-",
                wait,
            )
            self.guard.audit.emit("session.abandoned", **route.audit_fields())
        return routes

    async def _release_on_drivers(self, routes: list[Route]) -> None:
        """Have the drivers of these dropped routes release their sessions: running operations
        are interrupted and state freed now, not at the driver's own idle timeout."""
        releases = []
        for route in routes:
            if self.store.get(route.key) is not None:
                continue  # placed again meanwhile: the driver's session is in use
            driver = self.clusters.get(route.driver_id)
            if driver is not None and driver.state is not DriverState.DEAD:
                releases.append(self._release_on_driver(driver, route))
        await asyncio.gather(*releases)

    @staticmethod
    async def _release_on_driver(driver: Driver, route: Route) -> None:
        """Tell the driver: the session's operations are interrupted and its state freed."""
        try:
            await release_session(driver.address, route.session_id, route.user_id, 10.0, driver.auth_metadata)
        except Exception as exc:  # the route is gone either way; the driver's own timeout ends it
            log.warning("driver %s did not release session %s: %s", driver.id, route.session_id, exc)

    async def driver_died(self, driver: Driver, why: str) -> None:
        """Drop the routes of a dead driver; their sessions get SESSION_CHANGED on their next call."""
        now = time.time()
        routes = [r for r in self.store.all() if r.driver_id == driver.id]
        for r in routes:
            await self._lose(r, f"driver {driver.id} died: {why}", now)
        if routes:
            log.warning("%d session(s) lost with driver %s", len(routes), driver.id)

    async def _lose(self, route: Route, reason: str, now: float) -> None:
        """Drop a route whose driver is gone and remember why, for the session's next calls."""
        await self.store.delete(route.key)
        self.clusters.detach(route.driver_id)
        self._remember_lost(route.key, reason, now)

    def _remember_lost(self, key: SessionKey, reason: str, now: float) -> None:
        """The session's next calls are told why it is gone (SESSION_CHANGED), for one session TTL."""
        self._lost[key] = (reason, now)
        while len(self._lost) > _MAX_LOST:
            self._lost.pop(next(iter(self._lost)))

    # -- the decision -------------------------------------------------------------------------

    def resolve_known(self, ids: wire.RequestIds, metadata: Metadata = (), peer: str | None = None) -> Forward | None:
        """:meth:`resolve`'s synchronous fast path: the session's route, if it has one on a live driver.

        Gives the same :class:`Forward` as :meth:`resolve` (and touches the route likewise) for a
        session already placed whose caller needs no (re)verification, which is nearly every RPC;
        ``None`` means "ask :meth:`resolve`" (a new, pending or orphaned session, a new token, an
        invalid id or a rate limit, which it answers with an error).
        """
        session_id = ids.session_id
        if not session_id or not _is_uuid(session_id):
            return None
        try:
            who = self.guard.cached(metadata, peer, ids.user_id)
        except SparkgateError:
            return None
        if who is None:
            return None
        user = who.subject if who.verified else ids.user_id
        route = self.store.get((user, session_id))
        if route is None:
            return None
        driver = self.clusters.get(route.driver_id)
        if driver is None or driver.state is DriverState.DEAD:
            return None
        if self.guard.limits.enabled:
            try:
                self.guard.limits.admit(user, route.team)
            except SparkgateError:
                return None
        return self._forward_existing(route, driver, _rewrite(who, ids))

    async def resolve(
        self,
        method: str,
        metadata: Metadata,
        ids: wire.RequestIds,
        request: bytes | None,
        peer: str | None = None,
    ) -> Forward | Answer:
        """Where this call goes; ``peer`` is the verified mTLS client certificate's subject, if any."""
        known = self.resolve_known(ids, metadata, peer)
        if known is not None:
            return self._releasing_check(method, known) if method in _RELEASE else known
        who: Identity | None = None
        try:
            who = await self.guard.identify(metadata, peer, ids.user_id, method=method)
            decision = await self._resolve(method, metadata, ids, request, who)
        except SparkgateError as exc:
            self._audit_refusal(method, ids, who, exc)
            raise
        if method in _RELEASE and isinstance(decision, Forward):
            return self._releasing_check(method, decision)
        return decision

    def _releasing_check(self, method: str, decision: Forward) -> Forward | Answer:
        """A ReleaseExecute of a session whose ReleaseSession is already with the driver: answered here.

        pyspark's ``stop()`` sends ReleaseSession while ReleaseExecutes of finished queries are
        still on their way from a thread pool; those that reach the driver after it closed the
        session fail (``INVALID_HANDLE.SESSION_CLOSED``), which the client ignores but the audit log
        would record as errors. Closing the session releases its executions anyway. A second
        ReleaseSession still goes to the driver (a retry after a failed one must reach it), and a
        release whose answer never came is forgotten after :data:`_RELEASING_SECONDS`.
        """
        key = decision.route.key
        now = time.monotonic()
        if method == "ReleaseSession":
            self._releasing[key] = now
            if len(self._releasing) > _MAX_LOST:
                self._releasing.pop(next(iter(self._releasing)))
            return decision
        since = self._releasing.get(key)
        if since is not None and now - since < _RELEASING_SECONDS:
            return Answer(wire.empty_response(method, decision.route.session_id))
        return decision

    def _audit_refusal(self, method: str, ids: wire.RequestIds, who: Identity | None, exc: SparkgateError) -> None:
        if isinstance(exc, Unauthenticated):
            return  # audited as auth.failure by the guard
        event = "permission.denied" if isinstance(exc, PermissionDenied) else "rpc.error"
        self.guard.audit.emit(
            event,
            who=who.subject if who is not None else ids.user_id,
            session=ids.session_id,
            method=method,
            status=exc.grpc_status.name,
            reason=exc.message,
        )

    async def _resolve(
        self, method: str, metadata: Metadata, ids: wire.RequestIds, request: bytes | None, who: Identity
    ) -> Forward | Answer:
        rewrite = _rewrite(who, ids)
        if rewrite is not None:
            ids = ids._replace(user_id=rewrite)
        _check_session_id(ids.session_id)
        key = (ids.user_id, ids.session_id)
        route = self.store.get(key)
        if route is not None:
            driver = self.clusters.get(route.driver_id)
            if driver is not None and driver.state is not DriverState.DEAD:
                self.guard.limits.admit(ids.user_id, route.team)
                return self._forward_existing(route, driver, rewrite)
            # A driver gone without a death report (e.g. not found after a gateway restart):
            # the same as a reported death.
            await self._lose(route, f"driver {route.driver_id} is gone", time.time())
        others = self.store.users_of(ids.session_id) - {ids.user_id}
        if others:
            # Someone else's session id: never let it reach the driver holding that session.
            raise PermissionDenied(
                f"session {ids.session_id} belongs to another user; start your own session "
                "(a new SparkSession gets a new session id)"
            )
        lost = self._lost.get(key)
        if lost is not None:
            # The session's driver died and its route was dropped: tell the client on every call,
            # in the words both clients understand, instead of silently placing it anew.
            # Releasing or interrupting it needs nothing from a driver.
            if method in _NOOP_WITHOUT_SESSION:
                if method == "ReleaseSession":
                    self._lost.pop(key, None)
                return Answer(wire.empty_response(method, ids.session_id))
            raise status.session_changed(ids.session_id, lost[0])

        if method in _RELEASE:
            self._pending.pop(key, None)
            return Answer(wire.empty_response(method, ids.session_id))
        if method in _NEEDS_EXISTING:
            raise status.session_not_found(ids.session_id, "sparkgate has no driver for this session")

        in_flight = self._creating.get(key)
        if in_flight is not None:
            # Another RPC of the same new session is placing it; use its driver.
            fwd = await asyncio.shield(in_flight)
            return Forward(fwd.driver, fwd.route, rewrite_user=rewrite)

        partial = from_metadata(metadata, self._headers)
        pending = self._pending.get(key)
        set_pairs = wire.config_set_pairs(request) if method == "Config" and request else None
        if set_pairs is not None:
            partial.fill(from_config_pairs(set_pairs, self._headers))
        if pending is not None:
            partial.fill(pending.routing)

        if not partial.complete:
            if method in _NOOP_WITHOUT_SESSION:
                # Interrupt / FetchErrorDetails of a session that never reached a driver: nothing to do.
                return Answer(wire.empty_response(method, ids.session_id))
            if set_pairs is not None and _tolerates_local_answer(request):
                self._hold(key, partial, set_pairs)
                return Answer(wire.empty_response(method, ids.session_id))
            raise missing_routing_error(partial, self._headers)

        info = validate(partial, self._headers, self._environments)
        self.guard.authz.check(who, info.team, info.environment)
        self.guard.limits.admit(ids.user_id, info.team)
        if who.verified and info.user and info.user != who.subject:
            log.info("ignoring %s=%r: the caller is %s", self._headers.user, info.user, who.subject)
        owner = who.subject if who.verified else (info.user or ids.user_id)
        fut: asyncio.Future[Forward] = asyncio.get_running_loop().create_future()
        self._creating[key] = fut
        try:
            driver = await self._acquire(info.team, info.environment)
            new_route = Route(
                user_id=ids.user_id,
                session_id=ids.session_id,
                driver_id=driver.id,
                address=driver.address,
                team=info.team,
                environment=info.environment,
                owner=owner,
            )
            await self.store.put(new_route)
            self.clusters.attach(driver)
            held = self._pending.pop(key, None)
            preamble = (
                wire.encode_config_set_request(ids.session_id, ids.user_id, held.pairs)
                if held is not None and held.pairs
                else None
            )
            result = Forward(driver, new_route, preamble, new=True, rewrite_user=rewrite)
            fut.set_result(result)
            log.info(
                "session %s (user %s, team %s, env %s) -> driver %s",
                ids.session_id,
                ids.user_id or "-",
                info.team,
                info.environment,
                driver.id,
            )
            self.guard.audit.emit(
                "session.create",
                who=owner,
                auth=who.method,
                team=info.team,
                environment=info.environment,
                session=ids.session_id,
                driver=driver.id,
                method=method,
            )
            return result
        except BaseException as exc:
            fut.set_exception(exc)
            fut.exception()  # mark retrieved: waiters re-raise it themselves
            raise
        finally:
            self._creating.pop(key, None)

    async def failover(self, failed: Forward, why: str) -> Forward:
        """A new session's first call failed on its driver before any response: place it on another.

        Nothing of the session exists anywhere yet (the driver never answered), so it is placed
        afresh, away from every driver it already failed on; the failed driver is probed at once.
        """
        route = failed.route
        if await self.store.delete(route.key) is not None:
            self.clusters.detach(route.driver_id)
        self.clusters.report_unreachable(route.driver_id)
        tried = failed.tried | {failed.driver.id}
        log.warning(
            "session %s: first call failed on driver %s before any response (%s); placing it on another driver",
            route.session_id,
            failed.driver.id,
            why,
        )
        driver = await self._acquire(route.team, route.environment, exclude=tried)
        moved = dataclasses.replace(route, driver_id=driver.id, address=driver.address)
        await self.store.put(moved)
        self.clusters.attach(driver)
        log.info("session %s -> driver %s (failover)", route.session_id, driver.id)
        return Forward(driver, moved, failed.preamble, new=True, tried=tried, rewrite_user=failed.rewrite_user)

    async def _acquire(self, team: str, environment: str, exclude: frozenset[str] = frozenset()) -> Driver:
        wait = self._settings.driver_wait_seconds
        try:
            return await asyncio.wait_for(self.clusters.acquire(team, environment, exclude=exclude), wait)
        except TimeoutError:
            raise Unavailable(
                f"no driver for team {team!r} in {environment!r} became ready within {wait:.0f}s; "
                "one is still starting, retry shortly",
                retry_after_seconds=5.0,
            ) from None

    def _forward_existing(self, route: Route, driver: Driver, rewrite: str | None) -> Forward:
        now = time.time()
        self.store.touch(route.key, now)
        driver.last_used = now
        return Forward(driver, route, rewrite_user=rewrite)

    def _hold(self, key: SessionKey, partial: PartialRouting, pairs: list[tuple[str, str | None]]) -> None:
        pending = self._pending.get(key)
        if pending is None:
            if len(self._pending) >= self._settings.pending_max_sessions:
                raise BadRequest(
                    "too many sessions are waiting for their team/environment; send the routing "
                    "headers with the first request"
                )
            pending = _Pending(PartialRouting())
            self._pending[key] = pending
        pending.routing.fill(partial)
        if len(pending.pairs) + len(pairs) > 1000:
            raise BadRequest("too many Config(Set) options before the session was routable")
        pending.pairs.extend(pairs)

    # -- after the driver answered ------------------------------------------------------------

    async def released(self, route: Route) -> None:
        """The client released its session (ReleaseSession forwarded): drop the route."""
        self._releasing.pop(route.key, None)
        if await self.store.delete(route.key) is not None:
            self.clusters.detach(route.driver_id)
            self.guard.audit.emit(
                "session.release",
                **route.audit_fields(),
            )

    async def cloned(self, source: Route, new_session_id: str) -> None:
        """CloneSession succeeded: the clone lives on the source's driver."""
        if not new_session_id:
            return
        clone = Route(
            user_id=source.user_id,
            session_id=new_session_id,
            driver_id=source.driver_id,
            address=source.address,
            team=source.team,
            environment=source.environment,
            owner=source.owner,
        )
        await self.store.put(clone)
        d = self.clusters.get(source.driver_id)
        if d is not None:
            self.clusters.attach(d)
