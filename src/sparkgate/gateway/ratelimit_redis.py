"""Exact rate limits over every replica (``rate_limits.mode: exact``): one bucket per user and per
team in Redis, kept as GCRA (the generic cell rate algorithm).

A bucket is one key: its *theoretical arrival time* (TAT). A call at ``now`` is admitted if
``max(TAT, now) + T - burst·T <= now`` (``T`` = 1 / rate), and then moves the TAT on by ``T``; the
key expires once the bucket is full again. The user's and the team's buckets are checked and moved
together in one script, by Redis's clock, so replicas with skewed clocks agree: one round trip per
call of a placed session (a session's first call is counted by the replica's own buckets, so that
its placement starts at once). While Redis does not answer — and for a few seconds after, so that
calls do not each wait for it — the replica's own split buckets
(:class:`~sparkgate.security.ratelimit.RateLimiter`, rate ÷ replicas) stand in: a limit is never a
reason to refuse every call.
"""

from __future__ import annotations

import logging
import time

from sparkgate.config import RateLimitSettings
from sparkgate.errors import ResourceExhausted, Unavailable
from sparkgate.gateway.affinity_redis import RedisAffinityStore
from sparkgate.security.ratelimit import RateLimiter

log = logging.getLogger(__name__)

#: Seconds the replica's own buckets stand in after Redis did not answer, before Redis is asked again.
RETRY_REDIS_SECONDS = 5.0

# KEYS: the user's bucket, the team's bucket.
# ARGV: user interval µs, user burst, team interval µs, team burst (interval 0: no limit).
# Returns {0} when admitted, else {1, µs until a call would be, which: 'user'|'team'}.
_GCRA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local new = {}
for i = 1, 2 do
  local interval = tonumber(ARGV[2 * i - 1])
  if interval > 0 then
    local burst = tonumber(ARGV[2 * i])
    local tat = tonumber(redis.call('GET', KEYS[i]) or now)
    if tat < now then tat = now end
    local next_tat = tat + interval
    local allowed_at = next_tat - burst * interval
    if allowed_at > now then
      return {1, allowed_at - now, i == 1 and 'user' or 'team'}
    end
    new[i] = next_tat
  end
end
for i = 1, 2 do
  if new[i] then
    redis.call('SET', KEYS[i], new[i], 'PX', math.max(1, math.ceil((new[i] - now) / 1000)))
  end
end
return {0}
"""


class RedisRateLimits:
    """Per-user and per-team limits counted in Redis for every replica at once."""

    def __init__(self, store: RedisAffinityStore, settings: RateLimitSettings, fallback: RateLimiter) -> None:
        self._store = store
        self.settings = settings
        self._fallback = fallback
        self._script = store.redis.register_script(_GCRA)
        self._user = _interval_us(settings.per_user_rps)
        self._team = _interval_us(settings.per_team_rps)
        self._warned_at = 0.0
        self._alone_until = 0.0

    @property
    def enabled(self) -> bool:
        return bool(self._user or self._team)

    async def admit(self, user: str, team: str) -> None:
        """Take a call from ``user``'s bucket and ``team``'s (raises ResourceExhausted when over)."""
        s = self.settings
        if time.monotonic() < self._alone_until:  # Redis did not answer lately: no call waits for it
            self._fallback.admit(user, team)
            return
        keys = [self._store.key("rl:u:" + user), self._store.key("rl:t:" + team)]
        intervals = (self._user if user else 0, self._team if team else 0)  # (0: not limited)
        try:
            reply = await self._store.call(
                self._script(keys=keys, args=[intervals[0], s.per_user_burst, intervals[1], s.per_team_burst])
            )
        except Unavailable as exc:
            now = time.monotonic()
            self._alone_until = now + RETRY_REDIS_SECONDS
            if now - self._warned_at > 60:
                self._warned_at = now
                log.warning("rate limits counted by this replica alone while Redis does not answer: %s", exc.message)
            self._fallback.admit(user, team)
            return
        if int(reply[0]) == 0:
            return
        wait = int(reply[1]) / 1e6
        which = str(reply[2])
        key, rate, burst = (
            (user, s.per_user_rps, s.per_user_burst) if which == "user" else (team, s.per_team_rps, s.per_team_burst)
        )
        raise ResourceExhausted(
            f"rate limit: {which} {key!r} is over {rate:g} calls/s (burst {burst}, counted over every gateway; "
            f"rate_limits settings); retry in {wait:.2f}s",
            retry_after_seconds=wait,
        )


def _interval_us(rate: float) -> int:
    return round(1e6 / rate) if rate > 0 else 0
