"""An authenticated (or, with ``auth.mode: none``, merely claimed) caller."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Identity:
    #: Who: an email, a service name, or — when nothing is checked — whatever the client claims.
    subject: str
    groups: frozenset[str] = frozenset()
    #: How it was established: ``none`` (claimed, unchecked), ``token``, ``oidc`` or ``mtls``.
    method: str = "none"
    #: When the credential stops being valid (epoch seconds), if it says.
    expires_at: float | None = None

    @property
    def verified(self) -> bool:
        return self.method != "none"


def bearer_token(metadata: Iterable[tuple[str, str | bytes]]) -> str | None:
    """The token of an ``authorization: Bearer <token>`` header (what ``sc://…;token=`` sends)."""
    for key, value in metadata:
        if key == "authorization":
            text = value.decode("latin-1") if isinstance(value, bytes) else value
            scheme, _, token = text.strip().partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
            return None
    return None


def parse_groups(value: object) -> frozenset[str]:
    """Groups from a claim: a list, or a space/comma separated string (Okta sends a list)."""
    if isinstance(value, str):
        return frozenset(g for g in value.replace(",", " ").split() if g)
    if isinstance(value, list | tuple | set | frozenset):
        return frozenset(str(g) for g in value if str(g))
    return frozenset()
