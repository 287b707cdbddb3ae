"""Which of a namespace's drivers a new session goes to: small, pluggable policies.

The cluster manager narrows the choice to ready, healthy drivers of the session's namespace that
have room (fewer sessions than ``pool.sessions_per_driver``), or, when the namespace may not grow,
to all of its ready drivers; a :class:`PlacementPolicy` picks one of those candidates.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from sparkgate.clusters.base import Driver


class PlacementPolicy(Protocol):
    name: str

    def choose(self, candidates: Sequence[Driver]) -> Driver:
        """Pick one of ``candidates`` (never empty)."""
        ...


class LeastSessions:
    """Spread load: the driver with the fewest sessions; ties go to the one idle longest."""

    name = "least-sessions"

    def choose(self, candidates: Sequence[Driver]) -> Driver:
        return min(candidates, key=lambda d: (d.sessions, d.last_used))


class Pack:
    """Fill drivers one at a time: the busiest driver with room; ties go to the oldest.

    Fewer drivers stay busy, so the rest go idle and are stopped after the idle TTL.
    """

    name = "pack"

    def choose(self, candidates: Sequence[Driver]) -> Driver:
        return max(candidates, key=lambda d: (d.sessions, -d.started_at))


POLICIES: dict[str, type[PlacementPolicy]] = {"least-sessions": LeastSessions, "pack": Pack}


def policy(name: str) -> PlacementPolicy:
    try:
        return POLICIES[name]()
    except KeyError:
        raise ValueError(f"unknown placement policy {name!r} (known: {', '.join(POLICIES)})") from None
