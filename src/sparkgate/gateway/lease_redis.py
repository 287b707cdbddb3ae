"""The fleet leader's lease in Redis (``state.backend: redis``): one gateway at a time fills the
warm pool and stops idle drivers (:mod:`sparkgate.clusters.leader`); and what the gateways share
about the drivers (:class:`RedisFleet`: sessions per driver, driver starts per namespace, drivers
being stopped).

Every gateway campaigns every third of the lease: the holder renews it, the others take it once it
expired. A gateway counts itself leader only until its lease ends by its own monotonic clock, less a
margin, from the moment it asked: one that was paused or cut off stops acting before another can
hold the lease. Each new holder gets a higher fencing token.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Sequence

from sparkgate.gateway.affinity_redis import STREAM_LENGTH, RedisAffinityStore
from sparkgate.leases import TimedLease

log = logging.getLogger(__name__)

#: Seconds a lease lasts unless renewed (a new leader takes over within about this long).
LEASE_SECONDS = 10.0

# KEYS: lease, token counter. ARGV: this gateway's id, lease ms.
# Returns the token of the lease this gateway holds now, or 0.
_CAMPAIGN = """
local holder = redis.call('GET', KEYS[1])
if holder then
  local id, token = string.match(holder, '^(.*):(%d+)$')
  if id == ARGV[1] then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
    return tonumber(token)
  end
  return 0
end
local token = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], ARGV[1] .. ':' .. token, 'PX', ARGV[2])
return token
"""


# KEYS: lease. ARGV: this gateway's id. Deletes the lease only if this gateway holds it.
_RELEASE = """
local holder = redis.call('GET', KEYS[1])
if holder and string.match(holder, '^(.*):%d+$') == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class RedisLease(TimedLease):
    """:class:`~sparkgate.clusters.leader.Leadership` held in Redis; call :meth:`campaign` every
    ``lease_seconds / 3``."""

    def __init__(
        self,
        store: RedisAffinityStore,
        gateway_id: str,
        lease_seconds: float = LEASE_SECONDS,
        on_elected: Callable[[], None] | None = None,
    ) -> None:
        super().__init__(lease_seconds, on_elected, "fleet lease in Redis")
        self._store = store
        self._id = gateway_id
        self._campaign = store.redis.register_script(_CAMPAIGN)
        self._release = store.redis.register_script(_RELEASE)
        self._keys = [store.key("leader"), store.key("leader-token")]

    async def _round(self, asked: float) -> int:
        ms = int(self.lease_seconds * 1000)
        return int(await self._store.call(self._campaign(keys=self._keys, args=[self._id, ms])))

    async def _give_up(self) -> None:
        await self._store.call(self._release(keys=self._keys[:1], args=[self._id]))


# KEYS: the lock. ARGV: this gateway's value, ms. Taken if free or already this gateway's (a
# reply lost on the way: its own retry is not locked out).
_LOCK = """
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
"""
# KEYS: the lock. ARGV: its holder's value. Deletes it only if this gateway still holds it.
_UNLOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


# KEYS: the fleet lease, the event stream. ARGV: key prefix, lease token ('': not the leader's
# action), seconds a mark lasts, stream length, this gateway's origin, driver ids...
# Marks (and announces) the drivers with no session over every gateway; returns their ids.
_MARK_STOPPING = """
if ARGV[2] ~= '' then
  local holder = redis.call('GET', KEYS[1])
  if not holder or string.match(holder, ':(%d+)$') ~= ARGV[2] then return {} end
end
local marked = {}
for i = 6, #ARGV do
  local id = ARGV[i]
  if redis.call('SCARD', ARGV[1] .. 'd:' .. id) == 0 then
    redis.call('SET', ARGV[1] .. 'stopping:' .. id, '1', 'EX', ARGV[3])
    redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[4], '*', 'driver', id, 'state', 'stopping', 'from', ARGV[5])
    table.insert(marked, id)
  end
end
return marked
"""
#: Seconds a driver's stopping mark lasts (far longer than a stop takes; then it is forgotten).
STOPPING_MARK_SECONDS = 600


class RedisFleet:
    """:class:`~sparkgate.clusters.leader.SharedFleet` in Redis: sessions per driver are the
    store's ``d:<driver id>`` sets; a driver start for a namespace is a ``start:<namespace>`` key
    set if absent, with an expiry (a gateway that died starting one holds it no longer)."""

    def __init__(self, store: RedisAffinityStore, gateway_id: str) -> None:
        self._store = store
        self._value = f"{gateway_id}:{uuid.uuid4().hex[:8]}"
        self._lock = store.redis.register_script(_LOCK)
        self._unlock = store.redis.register_script(_UNLOCK)
        self._mark = store.redis.register_script(_MARK_STOPPING)

    async def sessions_on(self, driver_ids: Sequence[str]) -> dict[str, int] | None:
        return await self._store.sessions_on(driver_ids)

    async def lock_start(self, namespace: str, seconds: float) -> bool:
        key = self._store.key("start:" + namespace)
        return bool(await self._store.call(self._lock(keys=[key], args=[self._value, int(seconds * 1000)])))

    async def unlock_start(self, namespace: str) -> None:
        await self._store.call(self._unlock(keys=[self._store.key("start:" + namespace)], args=[self._value]))

    async def mark_stopping(self, driver_ids: Sequence[str], token: int | None) -> list[str]:
        """Marks ``stopping:<driver id>`` (the route script then places no session there) in the
        same script that counts the driver's sessions and checks the lease: nothing can be placed
        on a driver between the count and the mark, and a deposed leader's mark is refused."""
        if not driver_ids or token == 0:
            return []
        store = self._store
        lease = "" if token is None else str(token)
        args: list[str | int] = [store.key(""), lease, STOPPING_MARK_SECONDS, STREAM_LENGTH, store.origin]
        marked = await store.call(
            self._mark(keys=[store.key("leader"), store.key("events")], args=[*args, *driver_ids])
        )
        return [str(m) for m in marked]
