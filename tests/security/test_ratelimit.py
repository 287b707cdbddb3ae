from __future__ import annotations

import pytest

from sparkgate.config import RateLimitSettings
from sparkgate.errors import ResourceExhausted
from sparkgate.security.ratelimit import RateLimiter


def test_burst_then_refused_with_retry_after() -> None:
    rl = RateLimiter(RateLimitSettings(per_user_rps=2, per_user_burst=3, per_team_rps=100, per_team_burst=5))
    for _ in range(3):
        rl.admit("alice", "fe")
    with pytest.raises(ResourceExhausted, match="user 'alice' is over 2 calls/s") as e:
        rl.admit("alice", "fe")
    assert e.value.retry_after_seconds is not None and 0 < e.value.retry_after_seconds <= 0.5
    rl.admit("bob", "fe")  # another user has their own bucket...
    rl.admit("carol", "fe")  # ...but the team's is shared: its 5th token
    with pytest.raises(ResourceExhausted, match="team 'fe'"):
        rl.admit("dave", "fe")
    assert not RateLimiter(RateLimitSettings()).enabled


def test_gateway_replicas_split_each_limit() -> None:
    rl = RateLimiter(RateLimitSettings(per_user_rps=2, per_user_burst=4))
    rl.share(2)  # two gateways serve the same clients: each admits half
    for _ in range(2):
        rl.admit("alice", "fe")
    with pytest.raises(ResourceExhausted, match=r"over 2 calls/s \(burst 4, shared by 2 gateways"):
        rl.admit("alice", "fe")
    rl.share(1)
    assert rl.users is not None and (rl.users.rate, rl.users.burst) == (2, 4)
