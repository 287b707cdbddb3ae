"""Which gateway looks after the driver fleet when several share it.

Filling the warm pool and stopping idle drivers must be done by one gateway, the *leader*, or
replicas sharing drivers would each start a pool of their own. A :class:`Leadership` says whether
this gateway is it now. Alone (the default), it always is. With state shared in Redis the gateway
holds a lease (:class:`sparkgate.gateway.lease_redis.RedisLease`) that it renews; a gateway that
cannot renew it — stopped, cut off, paused longer than the lease — stops acting as leader when its
lease runs out by its own clock, before another can have taken over, and each new lease carries a
higher fencing token.
"""

from __future__ import annotations

from typing import Protocol


class Leadership(Protocol):
    def is_leader(self) -> bool:
        """Whether this gateway may act for the fleet now (checked right before each action)."""
        ...

    @property
    def token(self) -> int:
        """The fencing token of the lease held (higher for every new leader; 0: none)."""
        ...


class AlwaysLeader:
    """A gateway on its own: it is the leader."""

    token = 1

    def is_leader(self) -> bool:
        return True
