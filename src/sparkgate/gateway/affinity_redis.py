"""Session routes in Redis, shared by every gateway replica (``state.backend: redis``).

A route is created once and deleted later, never moved to another driver while it exists, so each
replica keeps a **near-cache** of the routes it has used: a placed session's call reads nothing
remote (:meth:`RedisAffinityStore.get` is a dict lookup). Redis is read when a replica meets a
session it does not know (:meth:`~RedisAffinityStore.load`: a client that reconnected through it),
written when a session is placed (:meth:`~RedisAffinityStore.create`, create-if-absent: two replicas
placing the same new session agree on one driver), and told of use in batches by the sweep.

Every route carries a version (a counter in Redis). A deleted route is announced on a Redis stream
with its version; every replica follows the stream from the last entry it read and drops its copy,
and remembers the version deleted, so a copy of that route read from Redis a moment before the
deletion is never cached after it. A replica that missed part of the stream (trimmed while it could
not read), or finds that Redis lost its data (its ``epoch`` key gone), drops its whole cache or
writes its routes back (create-if-absent: a route another replica made since wins).

Keys share one hash tag (``{<state.key_prefix>}``), so the scripts below touch one Redis Cluster
slot: ``r:<session>\\x1f<user>`` (the route, JSON), ``u:<session>`` (user ids with a route for that
session id), ``lost:<session>\\x1f<user>`` (why a gateway dropped a session: every gateway answers
its next call ``SESSION_CHANGED`` alike, and none places it anew; expires after the session TTL),
``used`` (a sorted set: last use per route), ``d:<driver id>`` (the driver's sessions, over every
replica: what placement and idle expiry count), ``stopping:<driver id>`` (a driver being stopped:
no route to it is created), ``ver``, ``epoch`` and ``events`` (the stream: routes deleted, drivers
a replica found dead, which the others probe at once, and drivers being stopped).

If Redis cannot be reached, placed sessions a replica knows keep working; everything that needs
Redis (a new session, a session this replica has not seen) fails with UNAVAILABLE and a retry
delay. A session is never placed anew because Redis did not answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any, cast

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from sparkgate.config import StateSettings
from sparkgate.connect.status import session_changed
from sparkgate.errors import PermissionDenied, Unavailable
from sparkgate.gateway.affinity import Route, SessionKey, remember

log = logging.getLogger(__name__)

_SEP = "\x1f"
#: Events kept in the stream (approximately): a replica further behind drops its cache.
STREAM_LENGTH = 100_000
#: Routes one sweep script handles at a time (each slice is one short Redis command).
_SWEEP_SLICE = 500

# KEYS: route, users, used, lost marker, version counter, the driver's sessions, its stopping mark.
# ARGV: route JSON (without its version), user, member, last use.
# Returns {'created'|'exists', route JSON} or {'lost', reason} or {'other', user} or {'stopping', ''}.
_CREATE = """
local lost = redis.call('GET', KEYS[4])
if lost then return {'lost', lost} end
local current = redis.call('GET', KEYS[1])
if current then return {'exists', current} end
if redis.call('EXISTS', KEYS[7]) == 1 then return {'stopping', ''} end
for _, u in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  if u ~= ARGV[2] then return {'other', u} end
end
local ver = redis.call('INCR', KEYS[5])
local value = string.sub(ARGV[1], 1, -2) .. ',"ver":' .. ver .. '}'
redis.call('SET', KEYS[1], value)
redis.call('SADD', KEYS[2], ARGV[2])
redis.call('ZADD', KEYS[3], ARGV[4], ARGV[3])
redis.call('SADD', KEYS[6], ARGV[3])
return {'created', value}
"""
# KEYS: route, users, used, events, lost marker.
# ARGV: user, member, stream length, driver id ('' = any), lost reason ('' = none), its TTL, key prefix.
_DELETE = """
local current = redis.call('GET', KEYS[1])
if not current then return false end
local route = cjson.decode(current)
if ARGV[4] ~= '' and route['driver_id'] ~= ARGV[4] then return false end
if ARGV[5] ~= '' then redis.call('SET', KEYS[5], ARGV[5], 'EX', ARGV[6]) end
redis.call('DEL', KEYS[1])
redis.call('SREM', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[2])
redis.call('SREM', ARGV[7] .. 'd:' .. route['driver_id'], ARGV[2])
redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[3], '*', 'del', ARGV[2], 'ver', route['ver'])
return current
"""
# KEYS: used, events. ARGV: cutoff, limit, key prefix, stream length, lost reason, its TTL.
# Returns {members looked at, dropped route JSON...}.
_SWEEP = """
local members = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[1], 'LIMIT', 0, ARGV[2])
local out = {#members}
for _, m in ipairs(members) do
  local rk = ARGV[3] .. 'r:' .. m
  local current = redis.call('GET', rk)
  redis.call('ZREM', KEYS[1], m)
  if current then
    local route = cjson.decode(current)
    redis.call('DEL', rk)
    redis.call('SREM', ARGV[3] .. 'd:' .. route['driver_id'], m)
    local sid, user = string.match(m, '^(.-)\\31(.*)$')
    redis.call('SREM', ARGV[3] .. 'u:' .. sid, user)
    if ARGV[5] ~= '' then redis.call('SET', ARGV[3] .. 'lost:' .. m, ARGV[5], 'EX', ARGV[6]) end
    redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[4], '*', 'del', m, 'ver', route['ver'])
    table.insert(out, current)
  end
end
return out
"""


def _connect(settings: StateSettings, *, socket_timeout: float | None) -> aioredis.Redis:
    """A client of the primary: by URL, or the one Sentinel names (followed across failovers)."""
    timeouts: dict[str, Any] = {
        "socket_timeout": socket_timeout,
        "socket_connect_timeout": settings.timeout_seconds,
        # A connection Redis closed (a restart, a failover) is replaced once, at once; a Redis that
        # does not answer in time is not asked again (the call's wait would double).
        "retry": Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
    }
    if settings.sentinels:
        addresses = [(h, int(p)) for h, _, p in (a.rpartition(":") for a in settings.sentinels)]
        sentinel = Sentinel(addresses, sentinel_kwargs=timeouts, **timeouts)
        primary: aioredis.Redis = sentinel.master_for(settings.master_name, decode_responses=True)
        return primary
    return aioredis.Redis.from_url(settings.redis_url, decode_responses=True, **timeouts)


def _member(key: SessionKey) -> str:
    user, session = key
    return f"{session}{_SEP}{user}"


def _encode(route: Route) -> str:
    return json.dumps(dataclasses.asdict(route), separators=(",", ":"))


def _decode(raw: str) -> tuple[Route, int]:
    fields = json.loads(raw)
    ver = int(fields.pop("ver", 0))
    return Route(**fields), ver


def _stream_id(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


class RedisAffinityStore:
    """An :class:`~sparkgate.gateway.affinity.AffinityStore` in Redis with a near-cache."""

    #: Other gateways write routes too: a miss here is asked of Redis (:meth:`load`).
    shared = True

    def __init__(
        self, settings: StateSettings, *, touch_margin: float = 0.0, client: aioredis.Redis | None = None
    ) -> None:
        """``touch_margin``: seconds other replicas may not yet have told Redis of a session's use
        (their sweep interval): a route is dropped only when idle that much longer."""
        self.settings = settings
        self.touch_margin = touch_margin
        self.redis: aioredis.Redis = client or _connect(settings, socket_timeout=settings.timeout_seconds)
        # The stream is read with blocking reads: a connection of its own, without a read timeout.
        self._reader: aioredis.Redis = _connect(settings, socket_timeout=None)
        self._prefix = f"{{{settings.key_prefix}}}:"
        self._used = self._prefix + "used"
        self._events = self._prefix + "events"
        self._routes: dict[SessionKey, Route] = {}
        self._versions: dict[SessionKey, int] = {}
        #: Highest version of each route deleted lately (a copy read before the deletion is stale).
        self._deleted: dict[SessionKey, int] = {}
        self._users: dict[str, set[str]] = {}
        #: Why other gateways dropped sessions this one asked about.
        self._lost: dict[SessionKey, str] = {}
        self._touched: dict[SessionKey, float] = {}
        self._epoch: str | None = None
        self._create = self.redis.register_script(_CREATE)
        self._delete = self.redis.register_script(_DELETE)
        self._sweep = self.redis.register_script(_SWEEP)
        self._follow: asyncio.Task[None] | None = None
        self.on_evicted: Callable[[Route], None] | None = None
        #: Called with ``(driver_id, state)`` when another replica announces a driver's state
        #: (:meth:`announce_driver`: ``dead``; ``stopping``: the fleet's leader stops it).
        self.on_driver_event: Callable[[str, str], None] | None = None
        #: This store's mark on the events it writes (it does not act on its own).
        self.origin = uuid.uuid4().hex[:12]
        #: Commands this store sent to Redis (tests: none per call of a known session).
        self.commands = 0

    async def __aenter__(self) -> RedisAffinityStore:
        start: str | None = None
        try:
            start = await self._last_event_id()
            await self._check_epoch()
        except Unavailable as exc:
            # Placed sessions need no Redis; the rest fails until it is back. Start anyway.
            log.warning("%s; reading it once it answers", exc.message)
        self._follow = asyncio.get_running_loop().create_task(self._follow_events(start))
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._follow is not None:
            self._follow.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._follow
        try:
            with contextlib.suppress(Unavailable):
                await self._flush_touches()
        finally:
            await self.redis.aclose()
            await self._reader.aclose()

    # -- the hot path: this replica's cache -------------------------------------------------------

    def get(self, key: SessionKey) -> Route | None:
        return self._routes.get(key)

    def touch(self, key: SessionKey, now: float) -> None:
        if key in self._routes:
            self._touched[key] = now

    def users_of(self, session_id: str) -> set[str]:
        """User ids with a route for this session id, as far as this replica knows (:meth:`load`
        asks Redis first for a session it does not know)."""
        return self._users.get(session_id, set())

    def all(self) -> list[Route]:
        """The routes this replica knows."""
        return list(self._routes.values())

    def lost(self, key: SessionKey) -> str | None:
        return self._lost.get(key)

    async def replicas(self, me: dict[str, Any], ttl: float) -> list[dict[str, Any]]:
        now = time.time()
        key = self._prefix + "replica:" + str(me["id"])
        pipe = self.redis.pipeline(transaction=False)
        pipe.set(key, json.dumps(me), ex=max(1, int(ttl)))
        pipe.zadd(self._prefix + "replicas", {str(me["id"]): now + ttl})
        pipe.zremrangebyscore(self._prefix + "replicas", "-inf", now)
        pipe.zrange(self._prefix + "replicas", 0, -1)
        *_, ids = await self._call(pipe.execute(), commands=4)
        infos = await self._call(self.redis.mget([self._prefix + "replica:" + i for i in ids])) if ids else []
        return [json.loads(raw) for raw in infos if raw]

    async def leave(self, replica_id: str) -> int:
        pipe = self.redis.pipeline(transaction=False)
        pipe.delete(self._prefix + "replica:" + replica_id)
        pipe.zrem(self._prefix + "replicas", replica_id)
        pipe.zremrangebyscore(self._prefix + "replicas", "-inf", time.time())
        pipe.zcard(self._prefix + "replicas")
        *_, others = await self._call(pipe.execute(), commands=4)
        return int(others)

    async def sessions_on(self, driver_ids: Sequence[str]) -> dict[str, int]:
        """How many sessions each driver has, over every replica (one round trip)."""
        if not driver_ids:
            return {}
        pipe = self.redis.pipeline(transaction=False)
        for driver_id in driver_ids:
            pipe.scard(self._prefix + "d:" + driver_id)
        counts = await self._call(pipe.execute(), commands=len(driver_ids))
        return {d: int(n) for d, n in zip(driver_ids, counts, strict=True)}

    async def announce_driver(self, driver_id: str, state: str) -> None:
        """Tell the other replicas, on the event stream, what this one found of a driver."""
        await self._call(
            self.redis.xadd(
                self._events,
                {"driver": driver_id, "state": state, "from": self.origin},
                maxlen=STREAM_LENGTH,
                approximate=True,
            )
        )

    async def reachable(self) -> bool:
        try:
            return bool(await self._call(self.redis.ping()))
        except Unavailable:
            return False

    # -- Redis ------------------------------------------------------------------------------------

    async def load(self, key: SessionKey) -> Route | None:
        """The session's route, from Redis if this replica does not know it (and the other users
        with a route for its session id, and why a gateway dropped it, if one did)."""
        route = self._routes.get(key)
        if route is not None:
            return route
        session = key[1]
        pipe = self.redis.pipeline(transaction=False)
        pipe.get(self._route_key(key))
        pipe.smembers(self._prefix + "u:" + session)
        pipe.get(self._prefix + "lost:" + _member(key))
        raw, users, lost = await self._call(pipe.execute(), commands=3)
        if users:
            self._users[session] = set(users)
        if lost:
            remember(self._lost, key, lost)
        return self._cache(raw) if raw is not None else None

    async def create(self, route: Route) -> tuple[Route, bool]:
        """Record a new route unless the session has one: the route in force (another replica's,
        when two placed the same new session at once), and whether this call created it. With
        ``state.wait_replicas``, a created route counts only once that many Redis replicas have it.

        Raises SESSION_CHANGED for a session a gateway dropped (it is never placed anew), and
        PERMISSION_DENIED for a session id another user has a route for."""
        key = route.key
        pipe = self.redis.pipeline(transaction=False)  # (WAIT counts the writes of its connection)
        await self._create(
            keys=[
                self._route_key(key),
                self._prefix + "u:" + route.session_id,
                self._used,
                self._prefix + "lost:" + _member(key),
                self._prefix + "ver",
                self._prefix + "d:" + route.driver_id,
                self._prefix + "stopping:" + route.driver_id,
            ],
            args=[_encode(route), route.user_id, _member(key), route.last_used],
            client=pipe,
        )
        wait = self.settings.wait_replicas
        if wait:
            pipe.wait(wait, self.settings.wait_timeout_ms)
        replies = await self._call(pipe.execute(), commands=2 if wait else 1)
        outcome, value = replies[0]
        if outcome == "lost":
            remember(self._lost, key, value)
            raise session_changed(route.session_id, value)
        if outcome == "other":
            raise PermissionDenied(
                f"session {route.session_id} belongs to another user; start your own session "
                "(a new SparkSession gets a new session id)"
            )
        if outcome == "stopping":
            if self.on_driver_event is not None:
                self.on_driver_event(route.driver_id, "stopping")  # (no other session goes there either)
            raise Unavailable(
                f"driver {route.driver_id} is being stopped (it had no session on any gateway); retry",
                retry_after_seconds=0.5,
            )
        created = outcome == "created"
        if created and wait and replies[1] < wait:
            with contextlib.suppress(Unavailable):
                await self.delete(key, driver_id=route.driver_id)  # (a retry places it again)
            raise Unavailable(
                f"Redis replicas acknowledged the new session's route {replies[1]} time(s), not {wait} "
                f"(state.wait_replicas) within {self.settings.wait_timeout_ms} ms",
                retry_after_seconds=1.0,
            )
        placed = self._cache(value)
        if placed is None:  # deleted again already (this replica saw it go)
            raise Unavailable(f"session {route.session_id} was released while it was placed; retry")
        return placed, created

    async def delete(
        self, key: SessionKey, *, driver_id: str = "", lost: str = "", lost_ttl: float = 0.0
    ) -> Route | None:
        user, session = key
        raw = await self._call(
            self._delete(
                keys=[
                    self._route_key(key),
                    self._prefix + "u:" + session,
                    self._used,
                    self._events,
                    self._prefix + "lost:" + _member(key),
                ],
                args=[user, _member(key), STREAM_LENGTH, driver_id, lost, max(1, int(lost_ttl)), self._prefix],
            )
        )
        if raw is None:
            known = self._routes.get(key)
            if known is not None and (not driver_id or known.driver_id == driver_id):
                self._drop(key, evicted=False)  # (gone from Redis already)
            return None
        route, ver = _decode(raw)
        remember(self._deleted, key, ver)
        self._drop(key, evicted=False)
        return route

    async def sweep(self, idle_before: float, *, lost: str = "", lost_ttl: float = 0.0) -> list[Route]:
        """Tell Redis of this replica's use since the last sweep, then drop routes every replica left
        idle since ``idle_before`` (less ``touch_margin``), in slices: no long Redis command, no long
        pause here. Also notices a Redis that lost its data, and writes this replica's routes back."""
        try:
            await self._check_epoch()
            await self._flush_touches()
            dropped: list[Route] = []
            while True:
                reply = await self._call(
                    self._sweep(
                        keys=[self._used, self._events],
                        args=[
                            idle_before - self.touch_margin,
                            _SWEEP_SLICE,
                            self._prefix,
                            STREAM_LENGTH,
                            lost,
                            max(1, int(lost_ttl)),
                        ],
                    )
                )
                looked_at, raws = reply[0], reply[1:]
                for raw in raws:
                    route, ver = _decode(raw)
                    remember(self._deleted, route.key, ver)
                    self._drop(route.key, evicted=False)
                    dropped.append(route)
                if looked_at < _SWEEP_SLICE:
                    return dropped
                await asyncio.sleep(0)
        except Unavailable as exc:
            log.warning("sweep skipped: %s", exc.message)
            return []

    async def _flush_touches(self) -> None:
        touched, self._touched = self._touched, {}
        touched = {k: ts for k, ts in touched.items() if k in self._routes}
        if not touched:
            return
        mapping = {_member(k): ts for k, ts in touched.items()}
        try:
            # xx: never re-adds a route deleted meanwhile; gt: only ever later.
            await self._call(self.redis.zadd(self._used, mapping, xx=True, gt=True))
        except Unavailable:
            for k, ts in touched.items():  # kept for the next sweep
                self._touched[k] = max(ts, self._touched.get(k, 0.0))
            raise
        for k, ts in touched.items():
            r = self._routes.get(k)
            if r is not None and ts > r.last_used:
                self._routes[k] = dataclasses.replace(r, last_used=ts)

    async def _check_epoch(self) -> None:
        """Notice a Redis that lost its data (restarted empty, a failover to a replica that had not
        caught up): its epoch key is gone or new. Then this replica writes its routes back."""
        epoch = await self._call(self.redis.get(self._prefix + "epoch"))
        if epoch is None:
            await self._call(self.redis.set(self._prefix + "epoch", uuid.uuid4().hex, nx=True))
            epoch = await self._call(self.redis.get(self._prefix + "epoch"))
        if self._epoch is not None and epoch != self._epoch:
            log.warning("the shared state lost data (its epoch changed): writing back %d route(s)", len(self._routes))
            for route in list(self._routes.values()):
                self._drop(route.key, evicted=False)
                try:
                    placed, _ = await self.create(route)
                except Unavailable as exc:
                    if "being stopped" not in exc.message:
                        raise
                    placed = None  # (its driver is being stopped: the session goes with it)
                if (placed is None or placed.driver_id != route.driver_id) and self.on_evicted is not None:
                    self.on_evicted(route)  # another replica placed it meanwhile: theirs stands
        self._epoch = epoch

    async def _last_event_id(self) -> str:
        last = await self._call(self.redis.xrevrange(self._events, count=1))
        return str(last[0][0]) if last else "0-0"

    async def _follow_events(self, last_id: str | None) -> None:
        """Drop cached routes other replicas deleted (read from the stream, from the last id seen).
        After a gap in what it read (the stream trimmed past it), the whole cache goes."""
        block_ms = 1000
        while True:
            try:
                if last_id is None:
                    last_id = await self._last_event_id()
                    self._drop_all("it could not read what other gateways deleted meanwhile")
                found = await self._reader.xread({self._events: last_id}, count=1000, block=block_ms)
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError, Unavailable) as exc:
                log.warning("reading route deletions from Redis failed (%s); retrying", exc)
                await asyncio.sleep(1.0)
                last_id = await self._resume_id(last_id)
                continue
            except Exception:
                log.exception("following route deletions failed; retrying")
                await asyncio.sleep(1.0)
                continue
            for _stream, entries in cast(list[Any], found or []):
                for entry_id, fields in entries:
                    last_id = entry_id
                    driver = fields.get("driver")
                    if driver and fields.get("from") != self.origin and self.on_driver_event is not None:
                        self.on_driver_event(driver, fields.get("state", ""))
                    member = fields.get("del")
                    if member:
                        session, _, user = member.partition(_SEP)
                        key = (user, session)
                        ver = int(fields.get("ver") or 0)
                        remember(self._deleted, key, max(ver, self._deleted.get(key, 0)))
                        if self._versions.get(key, 0) <= ver:
                            self._drop(key, evicted=True)

    async def _resume_id(self, last_id: str | None) -> str | None:
        """Where to read on after an error: ``last_id``, unless the stream no longer has it."""
        if last_id is None:
            return None
        try:
            info = await self._call(self.redis.xinfo_stream(self._events))
        except Unavailable:
            return last_id
        except RedisError:  # no stream yet
            return last_id
        first = (info.get("first-entry") or [None])[0]
        if first is not None and _stream_id(str(first)) > _stream_id(last_id) and last_id != "0-0":
            return None  # trimmed past what it read: start over from now, cache dropped
        return last_id

    def key(self, name: str) -> str:
        """A key of the shared state, under this store's prefix (for what lives beside the routes)."""
        return self._prefix + name

    async def call(self, awaitable: Any) -> Any:
        """Run a Redis command with this store's timeout; UNAVAILABLE if Redis does not answer."""
        return await self._call(awaitable)

    # -- helpers ----------------------------------------------------------------------------------

    def _route_key(self, key: SessionKey) -> str:
        return self._prefix + "r:" + _member(key)

    def _cache(self, raw: str) -> Route | None:
        """Cache a route read from Redis, unless this replica saw that version deleted."""
        route, ver = _decode(raw)
        if self._deleted.get(route.key, 0) >= ver:
            return None
        self._routes[route.key] = route
        self._versions[route.key] = ver
        self._users.setdefault(route.session_id, set()).add(route.user_id)
        return route

    def _drop(self, key: SessionKey, *, evicted: bool) -> None:
        route = self._routes.pop(key, None)
        self._versions.pop(key, None)
        self._touched.pop(key, None)
        users = self._users.get(key[1])
        if users is not None:
            users.discard(key[0])
            if not users:
                del self._users[key[1]]
        if evicted and route is not None and self.on_evicted is not None:
            self.on_evicted(route)

    def _drop_all(self, why: str) -> None:
        if self._routes:
            log.warning("dropping %d cached route(s): %s", len(self._routes), why)
        for key in list(self._routes):
            self._drop(key, evicted=True)

    async def _call(self, awaitable: Any, commands: int = 1) -> Any:
        self.commands += commands
        try:
            return await asyncio.wait_for(awaitable, self.settings.timeout_seconds)
        except (RedisError, OSError, TimeoutError) as exc:
            raise Unavailable(
                f"the gateway's shared state (Redis: {self._where()}) did not answer: {exc or type(exc).__name__}",
                retry_after_seconds=1.0,
            ) from None

    def _where(self) -> str:
        if self.settings.sentinels:
            return f"the primary {self.settings.master_name!r} of Sentinels {', '.join(self.settings.sentinels)}"
        kw = self.redis.connection_pool.connection_kwargs
        return f"{kw.get('host', '?')}:{kw.get('port', '?')}"
