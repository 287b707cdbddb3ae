"""What the pipeline decides for a call. Only the engine turns an intent into bytes on the wire.

* :class:`Forward` — relay the call to a driver;
* :class:`Answer` — the gateway answers with the method's empty, successful response;
* :class:`Refuse` — the call fails with a gRPC status (the error's);
* :class:`Wait` — the decision needs to wait (a driver starting, a token verified): await it for
  one of the others.
"""

from __future__ import annotations

from collections.abc import Awaitable
from dataclasses import dataclass

from sparkgate.clusters.base import Driver
from sparkgate.errors import SparkgateError
from sparkgate.gateway.affinity import Route

#: Other drivers a new session's first call is tried on after its driver failed before answering.
FAILOVER_ATTEMPTS = 2

ConfigPairs = tuple[tuple[str, str | None], ...]


@dataclass(frozen=True, slots=True)
class Forward:
    driver: Driver
    route: Route
    #: Config(Set) options the gateway held while the session was not yet routable: the engine
    #: sends them to the driver as one Config call before the client's request.
    held_config: ConfigPairs | None = None
    #: This call placed the session: if it fails on the driver before any response, it may be
    #: placed on another driver (:meth:`~sparkgate.gateway.pipeline.placement.Placement.failover`).
    new: bool = False
    #: Drivers this new session already failed on (excluded when it is placed again).
    tried: frozenset[str] = frozenset()
    #: With auth on: the identity the driver must see as ``user_context.user_id`` when the client
    #: sent another one (the engine rewrites the request; None: send it as it is).
    rewrite_user: str | None = None

    @property
    def can_fail_over(self) -> bool:
        return self.new and len(self.tried) < FAILOVER_ATTEMPTS


@dataclass(frozen=True, slots=True)
class Answer:
    """Answer with ``method``'s empty response for ``session_id``, status OK."""

    method: str
    session_id: str


@dataclass(frozen=True, slots=True)
class Refuse:
    error: SparkgateError


@dataclass(frozen=True, slots=True)
class Wait:
    """The rest of the decision, to be awaited (it gives a :class:`Forward`, :class:`Answer` or
    :class:`Refuse`, never raises)."""

    decision: Awaitable[Forward | Answer | Refuse]


Decided = Forward | Answer | Refuse
Intent = Forward | Answer | Refuse | Wait
