"""The fleet leader's lease as a ``coordination.k8s.io/v1`` Lease (gateways on Kubernetes that do
not share state in Redis; with Redis, the lease there also fences each stop, see
:mod:`sparkgate.gateway.lease_redis`).

Every gateway campaigns every third of the lease. The holder renews ``renewTime`` with an update
guarded by the resourceVersion it read (409: someone else wrote the Lease first; it is not the
holder). The others take the Lease over once it has not changed for a whole lease duration *by
their own clock* (renew times written by another machine's clock are not compared with ours), and
each takeover adds one to ``leaseTransitions``: the fencing token. A holder counts itself leader
only until its lease ends by its own monotonic clock, less a margin, from the moment it asked: one
that was paused or cut off stops acting before another can hold the Lease.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime

from sparkgate.errors import Conflict, NotFound
from sparkgate.kube.api import LEASES, KubeApi, Obj
from sparkgate.leases import TimedLease

log = logging.getLogger(__name__)

#: Seconds a lease lasts unless renewed.
LEASE_SECONDS = 15


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class KubeLease(TimedLease):
    """:class:`~sparkgate.clusters.leader.Leadership` held in a Lease; call :meth:`campaign` every
    ``lease_seconds / 3``."""

    def __init__(
        self,
        api: Callable[[], KubeApi],
        name: str,
        identity: str,
        *,
        lease_seconds: int = LEASE_SECONDS,
        on_elected: Callable[[], None] | None = None,
    ) -> None:
        super().__init__(lease_seconds, on_elected, f"fleet Lease {name}")
        self._api = api  # (the provider's client, once it is connected)
        self.name = name
        self.identity = identity
        #: The Lease's resourceVersion as last read, and when (monotonic) it was first seen.
        self._seen_version = ""
        self._seen_at = 0.0

    async def _round(self, asked: float) -> int:
        """The token of the Lease this gateway holds after this round, or 0."""
        try:
            lease = await self._api().get(LEASES, self.name)
        except NotFound:
            return await self._create()
        spec = lease.get("spec") or {}
        version = lease["metadata"]["resourceVersion"]
        if version != self._seen_version:  # (its holder renewed it: counted from when we learnt it)
            self._seen_version, self._seen_at = version, time.monotonic()
        holder = spec.get("holderIdentity") or ""
        transitions = int(spec.get("leaseTransitions") or 0)
        if holder == self.identity:
            return await self._write(lease, {**spec, "renewTime": _now()}, transitions)
        duration = float(spec.get("leaseDurationSeconds") or self.lease_seconds)
        if holder and asked - self._seen_at < duration:
            return 0  # held, and renewed within a lease duration as seen from here
        spec = {
            **spec,
            "holderIdentity": self.identity,
            "leaseDurationSeconds": int(self.lease_seconds),
            "acquireTime": _now(),
            "renewTime": _now(),
            "leaseTransitions": transitions + 1,
        }
        return await self._write(lease, spec, transitions + 1)

    async def _give_up(self) -> None:
        lease = await self._api().get(LEASES, self.name)
        spec = lease.get("spec") or {}
        if spec.get("holderIdentity") != self.identity:
            return
        # (no holder: the next campaign of another gateway takes it; transitions kept, so the
        # next token is still higher)
        try:
            await self._api().replace(LEASES, {"metadata": lease["metadata"], "spec": {**spec, "holderIdentity": ""}})
        except Conflict:
            pass  # (changed meanwhile: someone else holds it now)

    async def _create(self) -> int:
        body: Obj = {
            "metadata": {"name": self.name},
            "spec": {
                "holderIdentity": self.identity,
                "leaseDurationSeconds": int(self.lease_seconds),
                "acquireTime": _now(),
                "renewTime": _now(),
                "leaseTransitions": 1,
            },
        }
        try:
            await self._api().create(LEASES, body)
        except Conflict:
            return 0  # (another gateway created it first)
        return 1

    async def _write(self, lease: Obj, spec: Obj, token: int) -> int:
        body = {"metadata": {**lease["metadata"]}, "spec": spec}
        try:
            written = await self._api().replace(LEASES, body)
        except Conflict:
            return 0  # written by another since we read it
        self._seen_version = written["metadata"]["resourceVersion"]
        self._seen_at = time.monotonic()
        return token
