"""What a Spark Connect driver is to the platform, and the protocol every cluster provider implements.

A *provider* knows how to start, stop and list drivers on one engine (local processes today;
Spark standalone and Kubernetes with the Spark Operator plug in the same way). Everything above it —
the warm pool, placement, the gateway — talks only to :class:`ClusterProvider` and :class:`Driver`.
"""

from __future__ import annotations

import enum
import hashlib
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from sparkgate.clusters.leader import Lease
from sparkgate.config import DEFAULT_PROFILE, CatalogSettings


class DriverState(enum.StrEnum):
    WARMING = "warming"  #: started, not yet answering / warm-up query not done
    READY = "ready"  #: answers and has run its warm-up query
    DRAINING = "draining"  #: takes no new sessions; existing ones continue
    DEAD = "dead"  #: gone or unreachable


#: Namespace of a warm driver nobody has claimed yet.
POOL_NAMESPACE = ""


def namespace_for(team: str, environment: str) -> str:
    """A team's namespace in an environment: ``sjns-{team}-{environment}``."""
    return f"sjns-{team}-{environment}"


@dataclass(eq=False)
class Driver:
    """One Spark Connect server the gateway can send sessions to."""

    id: str
    #: ``host:port`` of its Spark Connect gRPC endpoint.
    address: str
    provider: str
    #: ``sjns-{team}-{env}`` once claimed; :data:`POOL_NAMESPACE` while it waits in the warm pool.
    namespace: str = POOL_NAMESPACE
    state: DriverState = DriverState.WARMING
    started_at: float = field(default_factory=time.time)
    last_used: float = field(default_factory=time.time)
    #: Sessions currently routed to it (the load-balancing signal).
    sessions: int = 0
    #: The pool profile it was started with (``pool.profiles``); only namespaces using that profile get it.
    profile: str = DEFAULT_PROFILE
    ui_url: str | None = None
    log_path: str | None = None
    pid: int | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    #: Pre-shared ``spark.connect.authenticate.token`` the driver requires (never shown in status).
    token: str | None = field(default=None, repr=False)
    #: What it was started with (:meth:`DriverSpec.fingerprint`, as its provider extends it); ``""``
    #: if unknown (not started by sparkgate, or by a version that did not record it).
    fingerprint: str = ""
    #: Run by others (adopted by label): used for sessions, never stopped, expired or replaced.
    external: bool = False

    @property
    def auth_metadata(self) -> tuple[tuple[str, str], ...]:
        """Headers every call to this driver carries (its token as ``authorization: Bearer``)."""
        return (("authorization", f"Bearer {self.token}"),) if self.token else ()

    def to_dict(self) -> dict[str, object]:
        return {
            "id": self.id,
            "address": self.address,
            "provider": self.provider,
            "namespace": self.namespace,
            "state": self.state.value,
            "started_at": self.started_at,
            "last_used": self.last_used,
            "sessions": self.sessions,
            "profile": self.profile,
            "ui_url": self.ui_url,
            "log_path": self.log_path,
            "pid": self.pid,
            "fingerprint": self.fingerprint,
        }


@dataclass(frozen=True)
class DriverSpec:
    """What to start: the namespace it is for (or the pool), its profile, and that profile's needs."""

    namespace: str = POOL_NAMESPACE
    spark_conf: Mapping[str, str] = field(default_factory=dict)
    profile: str = DEFAULT_PROFILE
    #: Spark version the driver must run (``None``: the provider's own).
    spark_version: str | None = None
    #: The catalog it mounts: the one every environment using the profile names.
    catalog: CatalogSettings = field(default_factory=CatalogSettings)

    def fingerprint(self, *extra: object) -> str:
        """A digest of what a driver started from this spec runs with (not where it serves).

        Equal for specs whose drivers behave alike: a restarted gateway compares it to tell an
        adopted driver started with settings that have changed since. ``extra``: what the
        provider adds (its own Spark conf, memory, master).
        """
        doc = {
            "spark_conf": dict(sorted(self.spark_conf.items())),
            "spark_version": self.spark_version,
            "catalog": self.catalog.mount_key(),
            "extra": [str(x) for x in extra],
        }
        return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:16]


@runtime_checkable
class ClusterProvider(Protocol):
    """Starts, stops and lists drivers on one engine. Use as an async context manager.

    The optional capabilities (``on_exit``, ``on_drain``, ``on_undrain``, ``starts_share_cpu``, ``fingerprint``,
    ``check_spec``, ``claim``, ``fleet_lease``, ``discard``, ``reap``, ``class_archive_status``):
    :class:`ProviderBase` gives every provider their no-op defaults, and a provider overrides what
    it can do.
    """

    name: str
    #: Called with ``(driver_id, returncode)`` when a driver's process exits on its own (a crash,
    #: ``kill -9``, OOM), for a provider that watches its drivers; the cluster manager sets it.
    on_exit: Callable[[str, int | None], None] | None
    #: Called with ``(driver_id, why)`` when a driver should take no new session (its node is
    #: being drained), for a provider that sees it coming; the cluster manager sets it.
    on_drain: Callable[[str, str], None] | None
    #: Called with ``driver_id`` when a driver ``on_drain`` named may take sessions again (its
    #: node's drain was called off); the cluster manager sets it.
    on_undrain: Callable[[str], None] | None
    #: Whether drivers starting at once compete for the same CPUs (one machine): then a team's
    #: start goes before the warm pool's, which waits for it.
    starts_share_cpu: bool

    def fingerprint(self, spec: DriverSpec) -> str:
        """What a driver started from ``spec`` here is made of: an adopted driver whose fingerprint
        differs (settings changed since it started) takes no new sessions and is replaced."""
        ...

    def check_spec(self, spec: DriverSpec) -> None:
        """Raise ``DriverStartError`` if this provider cannot run ``spec`` (checked at start, so a
        profile it cannot serve fails there, not in a crash loop)."""
        ...

    async def claim(self, driver: Driver, namespace: str) -> str:
        """Give a warm driver to ``namespace`` unless it was given to one already; return the
        namespace that holds it now (``namespace``: this claim won).

        Atomic where the provider's records are shared: two gateways racing for the last warm
        driver never both get it. The claim is kept where a restarted gateway finds it (adoption).
        """
        ...

    async def start_driver(self, spec: DriverSpec) -> Driver:
        """Start a driver and return it once READY (raises ``DriverStartError`` otherwise)."""
        ...

    async def stop_driver(self, driver: Driver) -> None:
        """Stop a driver for good (idempotent); the process or resource is gone afterwards."""
        ...

    async def list_drivers(self) -> list[Driver]:
        """Drivers this provider is running now, including ones started before a restart."""
        ...

    def fleet_lease(self, identity: str, on_elected: Callable[[], None]) -> Lease | None:
        """The lease electing which gateway sharing these drivers looks after them, if the
        provider's engine keeps one; ``None``: none (a gateway alone, or state shared in Redis)."""
        ...

    async def discard(self, driver: Driver) -> None:
        """A driver this gateway found dead (it exited, or failed its probes): remove what is left
        of it — unless others may still reach it (a driver Pod another gateway can reach is
        theirs to judge; it is stopped once it is really gone)."""
        ...

    async def reap(self) -> list[str]:
        """Remove drivers that will never serve (stuck starting long after any start could take,
        ended and left behind) and that nobody is starting; run by the fleet's leader. Returns
        their ids."""
        ...

    def class_archive_status(self) -> dict[str, str] | None:
        """Whether drivers start from a class-data archive (:mod:`sparkgate.spark.cds`), for
        ``sparkgate status``: its ``state`` and ``path``; ``None`` where the provider keeps none."""
        ...

    async def __aenter__(self) -> ClusterProvider: ...

    async def __aexit__(self, *exc: object) -> None: ...


class ProviderBase:
    """The optional capabilities of :class:`ClusterProvider`, as no-ops: a provider that cannot
    watch processes, has nothing to add to a driver's fingerprint, can run every profile, or
    keeps no records shared with other gateways subclasses this and overrides nothing."""

    on_exit: Callable[[str, int | None], None] | None = None
    on_drain: Callable[[str, str], None] | None = None
    on_undrain: Callable[[str], None] | None = None
    starts_share_cpu: bool = False

    def fingerprint(self, spec: DriverSpec) -> str:
        return spec.fingerprint()

    def check_spec(self, spec: DriverSpec) -> None:
        return None

    async def claim(self, driver: Driver, namespace: str) -> str:
        # Nothing shared to race with: the one gateway using these drivers decides alone.
        return namespace

    def fleet_lease(self, identity: str, on_elected: Callable[[], None]) -> Lease | None:
        """The lease that elects which of the gateways sharing these drivers looks after them,
        where the provider's engine keeps one (Kubernetes: a ``Lease``); ``None``: none here."""
        return None

    def class_archive_status(self) -> dict[str, str] | None:
        return None  # (drivers' images carry theirs, or none)

    async def discard(self, driver: Driver) -> None:
        # A driver only this gateway's host could reach: nothing of it may be left running.
        await self.stop_driver(driver)  # type: ignore[attr-defined]

    async def reap(self) -> list[str]:
        return []  # (its drivers end with their processes)
