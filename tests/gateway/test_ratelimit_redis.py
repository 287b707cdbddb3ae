"""Exact rate limits (``rate_limits.mode: exact``): one bucket per user and team for every replica,
in a real Redis."""

from __future__ import annotations

import uuid

import pytest

from sparkgate.clusters.manager import ClusterManager
from sparkgate.config import RateLimitSettings, StateSettings, load_settings
from sparkgate.errors import ConfigError, ResourceExhausted
from sparkgate.gateway.affinity_redis import RedisAffinityStore
from sparkgate.gateway.ratelimit_redis import RedisRateLimits
from sparkgate.gateway.server import Gateway
from sparkgate.security.ratelimit import RateLimiter
from sparkgate.testing.fake_provider import FakeProvider
from sparkgate.testing.redis import TempRedis


@pytest.fixture
def state(redis_server: TempRedis) -> StateSettings:
    return StateSettings(
        backend="redis", redis_url=redis_server.url, key_prefix=f"t{uuid.uuid4().hex[:8]}", timeout_seconds=0.5
    )


async def test_replicas_share_one_bucket_per_user_and_per_team(state: StateSettings) -> None:
    limits = RateLimitSettings(per_user_rps=0.5, per_user_burst=3, per_team_rps=0.5, per_team_burst=5, mode="exact")
    async with RedisAffinityStore(state) as a, RedisAffinityStore(state) as b:
        replicas = [RedisRateLimits(s, limits, fallback=RateLimiter(limits)) for s in (a, b)]
        for i in range(3):  # alice's burst, taken through either replica
            await replicas[i % 2].admit("alice", "fe")
        with pytest.raises(ResourceExhausted, match=r"user 'alice' is over 0\.5 calls/s .*every gateway") as over:
            await replicas[1].admit("alice", "fe")
        assert 1.5 < (over.value.retry_after_seconds or 0) <= 2.0  # one call per 2 s
        await replicas[0].admit("bob", "fe")
        await replicas[1].admit("bob", "fe")  # the team's 5th call
        with pytest.raises(ResourceExhausted, match=r"team 'fe'"):
            await replicas[0].admit("carol", "fe")
        await replicas[0].admit("carol", "ds")  # another team, another bucket


async def test_without_redis_each_replica_counts_alone(state: StateSettings, redis_server: TempRedis) -> None:
    limits = RateLimitSettings(per_user_rps=0.1, per_user_burst=2, mode="exact")
    async with RedisAffinityStore(state) as store:
        exact = RedisRateLimits(store, limits, fallback=RateLimiter(limits))
        redis_server.pause()
        try:
            await exact.admit("alice", "fe")  # not refused because Redis does not answer
            await exact.admit("alice", "fe")
            with pytest.raises(ResourceExhausted, match="rate_limits settings"):
                await exact.admit("alice", "fe")  # the replica's own bucket stands in
        finally:
            redis_server.resume()


def test_exact_limits_need_redis() -> None:
    settings = load_settings(None, {}, rate_limits={"mode": "exact", "per_user_rps": 1})
    with pytest.raises(ConfigError, match=r"state\.backend: redis"):
        Gateway(settings, ClusterManager(FakeProvider(), pool_size=0))
