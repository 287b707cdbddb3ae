"""What the pipeline reads about a call, and who it found the caller to be."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sparkgate.connect import wire
from sparkgate.gateway.affinity import SessionKey
from sparkgate.security.identity import Identity

Metadata = Sequence[tuple[str, str | bytes]]


@dataclass(frozen=True, slots=True)
class Call:
    """One Spark Connect call, as far as its first request message."""

    #: The RPC's name (``ExecutePlan``, ``Config``, ...).
    method: str
    #: The request's headers (gRPC metadata), transport headers included.
    metadata: Metadata
    #: The session id, user id and (CloneSession) new session id the first message carries.
    ids: wire.RequestIds
    #: The first request message, serialized (None when only its ids are known).
    request: bytes | None = None
    #: The verified mTLS client certificate's subject, if the client presented one.
    peer: str | None = None


@dataclass(frozen=True, slots=True)
class Caller:
    """Who makes the call, and the session key the gateway files it under."""

    identity: Identity
    #: The user id sessions are keyed on: the authenticated subject, or the id the client sent.
    user_id: str
    #: With auth on, the identity the driver must see when the client sent another one.
    rewrite_user: str | None

    @staticmethod
    def of(identity: Identity, ids: wire.RequestIds) -> Caller:
        if identity.verified:
            rewrite = identity.subject if identity.subject != ids.user_id else None
            return Caller(identity, identity.subject, rewrite)
        return Caller(identity, ids.user_id, None)

    def key(self, call: Call) -> SessionKey:
        return (self.user_id, call.ids.session_id)
