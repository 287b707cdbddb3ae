"""The fleet leader's lease in Redis (``state.backend: redis``): one gateway at a time fills the
warm pool and stops idle drivers (:mod:`sparkgate.clusters.leader`).

Every gateway campaigns every third of the lease: the holder renews it, the others take it once it
expired. A gateway counts itself leader only until its lease ends by its own monotonic clock, less a
margin, from the moment it asked: one that was paused or cut off stops acting before another can
hold the lease. Each new holder gets a higher fencing token.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from sparkgate.errors import Unavailable
from sparkgate.gateway.affinity_redis import RedisAffinityStore

log = logging.getLogger(__name__)

#: Seconds a lease lasts unless renewed (a new leader takes over within about this long).
LEASE_SECONDS = 10.0
#: Part of the lease a holder trusts, by its own clock (the rest covers clock rate and delays).
_TRUSTED = 0.8

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


class RedisLease:
    """:class:`~sparkgate.clusters.leader.Leadership` held in Redis; call :meth:`campaign` every
    ``lease_seconds / 3``."""

    def __init__(
        self,
        store: RedisAffinityStore,
        gateway_id: str,
        lease_seconds: float = LEASE_SECONDS,
        on_elected: Callable[[], None] | None = None,
    ) -> None:
        self._store = store
        self._id = gateway_id
        self.lease_seconds = lease_seconds
        self._on_elected = on_elected
        self._campaign = store.redis.register_script(_CAMPAIGN)
        self._keys = [store.key("leader"), store.key("leader-token")]
        self._token = 0
        self._until = 0.0

    @property
    def token(self) -> int:
        return self._token if self.is_leader() else 0

    def is_leader(self) -> bool:
        return self._token > 0 and time.monotonic() < self._until

    async def campaign(self) -> None:
        asked = time.monotonic()
        was = self.is_leader()
        try:
            token = int(
                await self._store.call(self._campaign(keys=self._keys, args=[self._id, int(self.lease_seconds * 1000)]))
            )
        except Unavailable as exc:
            log.warning("fleet lease not renewed: %s", exc.message)
            return  # (is_leader() runs out with the lease it had)
        self._token = token
        self._until = asked + self.lease_seconds * _TRUSTED if token else 0.0
        if token and not was:
            log.info("this gateway now looks after the driver fleet (lease token %d)", token)
            if self._on_elected is not None:
                self._on_elected()
        elif was and not token:
            log.warning("another gateway now looks after the driver fleet")
