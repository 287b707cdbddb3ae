"""Which gateway looks after the driver fleet when several share it, and what they agree on.

Filling the warm pool and stopping idle drivers must be done by one gateway, the *leader*, or
replicas sharing drivers would each start a pool of their own. A :class:`Leadership` says whether
this gateway is it now. Alone (the default), it always is. With state shared in Redis the gateway
holds a lease (:class:`sparkgate.gateway.lease_redis.RedisLease`) that it renews; a gateway that
cannot renew it — stopped, cut off, paused longer than the lease — stops acting as leader when its
lease runs out by its own clock, before another can have taken over, and each new lease carries a
higher fencing token.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol


class Leadership(Protocol):
    def is_leader(self) -> bool:
        """Whether this gateway may act for the fleet now (checked right before each action)."""
        ...

    @property
    def token(self) -> int:
        """The fencing token of the lease held (higher for every new leader; 0: none)."""
        ...


class Lease(Leadership, Protocol):
    """A :class:`Leadership` won and kept by campaigning: :meth:`campaign` every
    ``lease_seconds / 3`` (in Redis, or a Kubernetes ``Lease``)."""

    lease_seconds: float

    async def campaign(self) -> None: ...

    async def release(self) -> None:
        """Hand the lease on now (a gateway leaving), if this gateway holds it."""
        ...


class AlwaysLeader:
    """A gateway on its own: it is the leader."""

    token = 1

    def is_leader(self) -> bool:
        return True


class SharedFleet(Protocol):
    """What gateways sharing the drivers know together: each driver's sessions over all of them, and
    which namespace has a driver being started (so that two do not start one each)."""

    async def sessions_on(self, driver_ids: Sequence[str]) -> dict[str, int] | None:
        """Sessions per driver over every gateway (``None``: only this gateway's count)."""
        ...

    async def lock_start(self, namespace: str, seconds: float) -> bool:
        """Whether this gateway may start a driver for ``namespace`` now (held for ``seconds``
        at most); ``False``: another gateway is starting one."""
        ...

    async def unlock_start(self, namespace: str) -> None: ...

    async def mark_stopping(self, driver_ids: Sequence[str], token: int | None) -> list[str]:
        """Of ``driver_ids``, those with no session over every gateway, now marked as being stopped:
        from then on no gateway places a session on them, so they may be stopped whenever this
        gateway gets to it. With a lease ``token`` (what the fleet's leader does), only while that
        lease is held: a leader that lost its lease, however long it was paused, stops nothing."""
        ...


class Alone:
    """A gateway that shares its drivers with none: its counts are the counts; it starts freely."""

    async def sessions_on(self, driver_ids: Sequence[str]) -> dict[str, int] | None:
        return None

    async def lock_start(self, namespace: str, seconds: float) -> bool:
        return True

    async def unlock_start(self, namespace: str) -> None:
        return None

    async def mark_stopping(self, driver_ids: Sequence[str], token: int | None) -> list[str]:
        return list(driver_ids)  # (this gateway's own counts are the whole story)
