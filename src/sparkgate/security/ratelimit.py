"""Token buckets per user and per team: a burst is allowed, a sustained flood is slowed.

Each RPC takes one token from the caller's bucket and one from their team's; an empty bucket
refuses the call with RESOURCE_EXHAUSTED and a RetryInfo saying when a token will be there
(both Spark Connect clients retry RESOURCE_EXHAUSTED... only with RetryInfo-aware policies, so the
message also says it). Buckets of callers gone quiet are dropped by :meth:`RateLimiter.sweep`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from sparkgate.config import RateLimitSettings
from sparkgate.errors import ResourceExhausted

_MAX_BUCKETS = 100_000


@dataclass(slots=True)
class _Bucket:
    tokens: float
    at: float


class TokenBuckets:
    """A bucket per key: ``burst`` tokens, refilled at ``rate`` per second; ``setting`` names what
    sets the limit, in the refusal."""

    def __init__(self, rate: float, burst: int, what: str, setting: str = "rate_limits settings") -> None:
        self.rate = self.full_rate = rate
        self.burst = self.full_burst = float(burst)
        self.what = what
        self.setting = setting
        #: Gateways sharing the limit (each admits its share).
        self.gateways = 1
        self._buckets: dict[str, _Bucket] = {}

    def share(self, gateways: int) -> None:
        """``gateways`` replicas serve the same clients: each admits 1/gateways of the rate and burst."""
        self.gateways = max(1, gateways)
        self.rate = self.full_rate / self.gateways
        self.burst = max(1.0, self.full_burst / self.gateways)

    def take(self, key: str, now: float) -> None:
        b = self._buckets.get(key)
        if b is None:
            if len(self._buckets) >= _MAX_BUCKETS:
                self.sweep(now)
            b = self._buckets[key] = _Bucket(self.burst, now)
        else:
            b.tokens = min(self.burst, b.tokens + (now - b.at) * self.rate)
            b.at = now
        if b.tokens < 1.0:
            wait = (1.0 - b.tokens) / self.rate
            raise ResourceExhausted(
                f"rate limit: {self.what} {key!r} is over {self.full_rate:g} calls/s (burst {self.full_burst:.0f}"
                + (f", shared by {self.gateways} gateways" if self.gateways > 1 else "")
                + f"; {self.setting}); retry in {wait:.2f}s",
                retry_after_seconds=wait,
            )
        b.tokens -= 1.0

    def sweep(self, now: float) -> None:
        """Forget buckets that have refilled completely (their callers went quiet)."""
        full = [k for k, b in self._buckets.items() if b.tokens + (now - b.at) * self.rate >= self.burst]
        for k in full:
            del self._buckets[k]


class RateLimiter:
    def __init__(self, settings: RateLimitSettings) -> None:
        self.users = (
            TokenBuckets(settings.per_user_rps, settings.per_user_burst, "user") if settings.per_user_rps else None
        )
        self.teams = (
            TokenBuckets(settings.per_team_rps, settings.per_team_burst, "team") if settings.per_team_rps else None
        )

    @property
    def enabled(self) -> bool:
        return self.users is not None or self.teams is not None

    def admit(self, user: str, team: str) -> None:
        """Take a token for ``user`` and for ``team`` (either may be empty: not limited)."""
        now = time.monotonic()
        if self.users is not None and user:
            self.users.take(user, now)
        if self.teams is not None and team:
            self.teams.take(team, now)

    def share(self, gateways: int) -> None:
        """Gateway replicas serving the same clients split each limit evenly."""
        for b in (self.users, self.teams):
            if b is not None:
                b.share(gateways)

    def sweep(self) -> None:
        now = time.monotonic()
        for b in (self.users, self.teams):
            if b is not None:
                b.sweep(now)
