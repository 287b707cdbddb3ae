"""Session routes in Redis, shared by every gateway replica (``state.backend: redis``).

A route is created once and deleted later, never moved to another driver while it exists, so each
replica keeps a **near-cache** of the routes it has used: a placed session's call reads nothing
remote (:meth:`RedisAffinityStore.get` is a dict lookup). Redis is read when a replica meets a
session it does not know (:meth:`~RedisAffinityStore.load`: a client that reconnected through it),
written when a session is placed (:meth:`~RedisAffinityStore.create`, create-if-absent: two replicas
placing the same new session agree on one driver), and told of use in batches by the sweep. A
deleted route is announced on a Redis stream that every replica reads from its last id, so the
stale cache entries — the only kind there can be — go.

Keys share one hash tag (``{<state.key_prefix>}``), so the scripts below touch one Redis Cluster
slot: ``r:<session>\\x1f<user>`` (the route, JSON), ``u:<session>`` (user ids with a route for that
session id), ``lost:<session>\\x1f<user>`` (why a gateway dropped a session: every gateway answers
its next call ``SESSION_CHANGED`` alike; expires after the session TTL), ``used`` (a sorted set: last
use per route) and ``events`` (the stream).

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
from typing import Any, cast

import redis.asyncio as aioredis
from redis.asyncio.sentinel import Sentinel
from redis.exceptions import RedisError

from sparkgate.config import StateSettings
from sparkgate.errors import Unavailable
from sparkgate.gateway.affinity import Route, SessionKey

log = logging.getLogger(__name__)

_SEP = "\x1f"
#: Events kept in the stream (approximately): replicas further behind than this refill their cache.
_STREAM_LENGTH = 100_000
#: Routes one sweep script deletes at a time (each slice is one short Redis command).
_SWEEP_SLICE = 500
#: Markers of dropped sessions kept in this gateway's cache at most.
_MAX_LOST = 100_000
#: Milliseconds a read of the stream waits for news (under the client's socket timeout).
_BLOCK_MS = 1000

# KEYS: route, users, used, events. ARGV: route JSON, user, member, last use.
_CREATE = """
local current = redis.call('GET', KEYS[1])
if current then return current end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('SADD', KEYS[2], ARGV[2])
redis.call('ZADD', KEYS[3], ARGV[4], ARGV[3])
return false
"""
# KEYS: route, users, used, events. ARGV: user, member.
_DELETE = """
local current = redis.call('GET', KEYS[1])
if not current then return false end
redis.call('DEL', KEYS[1])
redis.call('SREM', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[2])
redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[3], '*', 'del', ARGV[2])
return current
"""
# KEYS: used, events. ARGV: cutoff, limit, key prefix, stream length.
_SWEEP = """
local members = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[1], 'LIMIT', 0, ARGV[2])
local out = {}
for _, m in ipairs(members) do
  local rk = ARGV[3] .. 'r:' .. m
  local current = redis.call('GET', rk)
  redis.call('ZREM', KEYS[1], m)
  if current then
    redis.call('DEL', rk)
    local sid, user = string.match(m, '^(.-)\\31(.*)$')
    redis.call('SREM', ARGV[3] .. 'u:' .. sid, user)
    redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[4], '*', 'del', m)
    table.insert(out, current)
  end
end
return out
"""


def _connect(settings: StateSettings) -> aioredis.Redis:
    """A client of the primary: by URL, or the one Sentinel names (followed across failovers)."""
    timeouts: dict[str, Any] = {
        "socket_timeout": settings.timeout_seconds,
        "socket_connect_timeout": settings.timeout_seconds,
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


def _decode(raw: str | bytes) -> Route:
    return Route(**json.loads(raw))


class RedisAffinityStore:
    """An :class:`~sparkgate.gateway.affinity.AffinityStore` in Redis with a near-cache."""

    #: Other gateways write routes too: a miss here is asked of Redis (:meth:`load`).
    shared = True

    def __init__(self, settings: StateSettings, client: aioredis.Redis | None = None) -> None:
        self.settings = settings
        self.redis: aioredis.Redis = client or _connect(settings)
        self._prefix = f"{{{settings.key_prefix}}}:"
        self._used = self._prefix + "used"
        self._events = self._prefix + "events"
        self._routes: dict[SessionKey, Route] = {}
        self._users: dict[str, set[str]] = {}
        #: Why other gateways dropped sessions this one asked about (bounded like the routes).
        self._lost: dict[SessionKey, str] = {}
        self._touched: dict[SessionKey, float] = {}
        self._create = self.redis.register_script(_CREATE)
        self._delete = self.redis.register_script(_DELETE)
        self._sweep = self.redis.register_script(_SWEEP)
        self._follow: asyncio.Task[None] | None = None
        #: Commands this store sent to Redis (tests: none per call of a known session).
        self.commands = 0

    async def __aenter__(self) -> RedisAffinityStore:
        try:
            last = await self._call(self.redis.xrevrange(self._events, count=1))
        except Unavailable as exc:
            # Placed sessions need no Redis; the rest fails until it is back. Start anyway.
            log.warning("%s; following route deletions from now on once it answers", exc.message)
            last = []
        start = last[0][0] if last else "0-0"
        self._follow = asyncio.get_running_loop().create_task(self._follow_events(start))
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._follow is not None:
            self._follow.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._follow
        with contextlib.suppress(RedisError, OSError):
            await self._flush_touches()
        await self.redis.aclose()

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

    # -- Redis ------------------------------------------------------------------------------------

    async def load(self, key: SessionKey) -> Route | None:
        """The session's route, from Redis if this replica does not know it (and the other users
        with a route for its session id)."""
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
            self._lost[key] = lost
            while len(self._lost) > _MAX_LOST:
                self._lost.pop(next(iter(self._lost)))
        if raw is None:
            return None
        route = _decode(raw)
        self._cache(route)
        return route

    def lost(self, key: SessionKey) -> str | None:
        return self._lost.get(key)

    async def remember_lost(self, lost: list[tuple[SessionKey, str]], ttl: float) -> None:
        pipe = self.redis.pipeline(transaction=False)
        for key, reason in lost:
            pipe.set(self._prefix + "lost:" + _member(key), reason, ex=max(1, int(ttl)))
        try:
            await self._call(pipe.execute(), commands=len(lost))
        except Unavailable as exc:  # this gateway still tells its own clients
            log.warning("could not share why %d session(s) were dropped: %s", len(lost), exc.message)

    async def create(self, route: Route) -> Route:
        """Record a new route unless the session has one: the route in force (another replica's,
        when two placed the same new session at once). With ``state.wait_replicas``, returns once
        that many Redis replicas have it."""
        key = route.key
        raw = await self._call(
            self._create(
                keys=[self._route_key(key), self._prefix + "u:" + route.session_id, self._used, self._events],
                args=[_encode(route), route.user_id, _member(key), route.last_used],
            )
        )
        winner = route if raw is None else _decode(raw)
        if raw is None and self.settings.wait_replicas:
            acked = await self._call(self.redis.wait(self.settings.wait_replicas, self.settings.wait_timeout_ms))
            if acked < self.settings.wait_replicas:
                raise Unavailable(
                    f"Redis replicas acknowledged the new session's route {acked} time(s), not "
                    f"{self.settings.wait_replicas} (state.wait_replicas) within {self.settings.wait_timeout_ms} ms",
                    retry_after_seconds=1.0,
                )
        self._cache(winner)
        return winner

    async def put(self, route: Route) -> None:
        """Record a route (replacing one the session may have)."""
        await self.delete(route.key)
        await self.create(route)

    async def delete(self, key: SessionKey) -> Route | None:
        user, session = key
        known = self._uncache(key)
        self._touched.pop(key, None)
        raw = await self._call(
            self._delete(
                keys=[self._route_key(key), self._prefix + "u:" + session, self._used, self._events],
                args=[user, _member(key), _STREAM_LENGTH],
            )
        )
        return _decode(raw) if raw is not None else known

    async def sweep(self, idle_before: float) -> list[Route]:
        """Tell Redis of this replica's use since the last sweep, then drop routes every replica left
        idle since ``idle_before`` (in slices: no long Redis command, no long pause here)."""
        try:
            await self._flush_touches()
            dropped: list[Route] = []
            while True:
                raws = await self._call(
                    self._sweep(
                        keys=[self._used, self._events],
                        args=[idle_before, _SWEEP_SLICE, self._prefix, _STREAM_LENGTH],
                    )
                )
                for raw in raws:
                    route = _decode(raw)
                    self._uncache(route.key)
                    dropped.append(route)
                if len(raws) < _SWEEP_SLICE:
                    return dropped
        except Unavailable as exc:
            log.warning("sweep skipped: %s", exc.message)
            return []

    async def _flush_touches(self) -> None:
        touched, self._touched = self._touched, {}
        if not touched:
            return
        mapping = {_member(k): ts for k, ts in touched.items()}
        try:
            await self._call(self.redis.zadd(self._used, mapping, gt=True))  # only ever later
        except Unavailable:
            for k, ts in touched.items():  # kept for the next sweep
                self._touched[k] = max(ts, self._touched.get(k, 0.0))
            raise
        for k, ts in touched.items():
            r = self._routes.get(k)
            if r is not None and ts > r.last_used:
                self._routes[k] = dataclasses.replace(r, last_used=ts)

    async def _follow_events(self, last_id: str) -> None:
        """Drop cached routes other replicas deleted (read from the stream, from the last id seen)."""
        while True:
            try:
                found = await self.redis.xread({self._events: last_id}, count=1000, block=_BLOCK_MS)
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as exc:
                log.warning("reading route deletions from Redis failed (%s); retrying", exc)
                await asyncio.sleep(1.0)
                continue
            streams = cast(list[Any], found or [])
            for _stream, entries in streams:
                for entry_id, fields in entries:
                    last_id = entry_id
                    member = fields.get("del")
                    if member:
                        session, _, user = member.partition(_SEP)
                        self._uncache((user, session))

    # -- helpers ----------------------------------------------------------------------------------

    def _route_key(self, key: SessionKey) -> str:
        return self._prefix + "r:" + _member(key)

    def _cache(self, route: Route) -> None:
        self._routes[route.key] = route
        self._users.setdefault(route.session_id, set()).add(route.user_id)

    def _uncache(self, key: SessionKey) -> Route | None:
        route = self._routes.pop(key, None)
        users = self._users.get(key[1])
        if users is not None:
            users.discard(key[0])
            if not users:
                del self._users[key[1]]
        return route

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
