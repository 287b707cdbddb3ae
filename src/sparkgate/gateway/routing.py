"""Routing info — team, environment, user — from wherever the client put it.

Clients can name their team and environment three ways, all of which the gateway accepts:

* **gRPC metadata**, e.g. ``sc://gw:15002/;x-doordash-team=fe;x-doordash-environment=prod``: every
  non-reserved connection-string parameter becomes a header on every RPC (Python and JVM clients);
* a header set by a ``ChannelBuilder`` / client interceptor;
* ``builder.config("spark.connect.grpc.header.x-doordash-team", "fe")``, the form many existing
  snippets use. No real client turns this into a header: it arrives as a ``Config(Set)`` RPC
  (Python: all builder options in one Set; JVM: one Set per key). The gateway reads those pairs too.

Headers win over Config pairs when both are present.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from sparkgate.config import RoutingHeaders
from sparkgate.errors import BadRequest


@dataclass(frozen=True, slots=True)
class RoutingInfo:
    team: str
    environment: str
    user: str = ""


@dataclass(slots=True)
class PartialRouting:
    """Routing info collected so far for a session (any field may still be missing)."""

    team: str = ""
    environment: str = ""
    user: str = ""

    def fill(self, other: PartialRouting) -> None:
        """Take ``other``'s values where this one has none (this one has priority)."""
        self.team = self.team or other.team
        self.environment = self.environment or other.environment
        self.user = self.user or other.user

    @property
    def complete(self) -> bool:
        return bool(self.team and self.environment)


def _metadata_value(metadata: Iterable[tuple[str, str | bytes]], key: str) -> str:
    for k, v in metadata:
        if k == key:
            return v.decode("utf-8", "replace") if isinstance(v, bytes) else v
    return ""


def from_metadata(metadata: Iterable[tuple[str, str | bytes]], headers: RoutingHeaders) -> PartialRouting:
    md = list(metadata)
    return PartialRouting(
        team=_metadata_value(md, headers.team).strip(),
        environment=_metadata_value(md, headers.environment).strip(),
        user=_metadata_value(md, headers.user).strip(),
    )


def from_config_pairs(pairs: Iterable[tuple[str, str | None]], headers: RoutingHeaders) -> PartialRouting:
    """Routing values among ``spark.connect.grpc.header.<name>`` Config(Set) pairs."""
    found = PartialRouting()
    prefix = headers.config_prefix
    for key, value in pairs:
        if not key.startswith(prefix) or value is None:
            continue
        name = key[len(prefix) :].lower()
        if name == headers.team:
            found.team = value.strip()
        elif name == headers.environment:
            found.environment = value.strip()
        elif name == headers.user:
            found.user = value.strip()
    return found


def is_routing_key(key: str, headers: RoutingHeaders) -> bool:
    return key.startswith(headers.config_prefix)


def missing_routing_error(partial: PartialRouting, headers: RoutingHeaders) -> BadRequest:
    missing = [
        f"{what} (header {name!r})"
        for what, name, have in (
            ("team", headers.team, partial.team),
            ("environment", headers.environment, partial.environment),
        )
        if not have
    ]
    return BadRequest(
        "sparkgate cannot route this session: missing "
        + " and ".join(missing)
        + ". Name them in the connection string, e.g. "
        f"sc://<gateway>:15002/;{headers.team}=<team>;{headers.environment}=<environment>, "
        f'or with SparkSession.builder.config("{headers.config_prefix}{headers.team}", "<team>")'
        f'.config("{headers.config_prefix}{headers.environment}", "<environment>")'
    )


def validate(partial: PartialRouting, headers: RoutingHeaders, environments: Mapping[str, object]) -> RoutingInfo:
    """Turn collected routing info into a :class:`RoutingInfo`, or explain what is wrong."""
    if not partial.complete:
        raise missing_routing_error(partial, headers)
    if partial.environment not in environments:
        known = ", ".join(sorted(environments))
        raise BadRequest(
            f"unknown environment {partial.environment!r} (from {headers.environment!r}); this gateway serves: {known}"
        )
    if not _valid_name(partial.team):
        raise BadRequest(
            f"team {partial.team!r} (from {headers.team!r}) is not a valid name: use lower-case "
            "letters, digits and '-' (it becomes part of the namespace sjns-<team>-<environment>)"
        )
    return RoutingInfo(partial.team, partial.environment, partial.user)


def _valid_name(name: str) -> bool:
    return (
        0 < len(name) <= 48
        and name[0].isalnum()
        and name[-1].isalnum()
        and all(c.isdigit() or ("a" <= c <= "z") or c == "-" for c in name)
    )
