"""What every fleet lease shares, wherever it is kept (Redis, a Kubernetes ``Lease``).

A gateway campaigns every third of the lease: it renews the lease it holds, or takes one that ran
out. It counts itself leader only until its lease ends by its own monotonic clock, less a margin,
from the moment it asked — so one that was paused or cut off stops acting before another can hold
the lease — and each new holder gets a higher fencing token.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from sparkgate.errors import SparkgateError

log = logging.getLogger(__name__)

#: Part of the lease a holder trusts, by its own clock (the rest covers clock rate and delays).
TRUSTED = 0.8


class TimedLease:
    """Subclasses say how a round of the campaign goes (:meth:`_round`); call :meth:`campaign`
    every ``lease_seconds / 3``."""

    def __init__(self, lease_seconds: float, on_elected: Callable[[], None] | None, what: str) -> None:
        self.lease_seconds = float(lease_seconds)
        self._on_elected = on_elected
        self._what = what
        self._token = 0
        self._until = 0.0

    @property
    def token(self) -> int:
        """The fencing token of the lease held now (0: none)."""
        return self._token if self.is_leader() else 0

    def is_leader(self) -> bool:
        return self._token > 0 and time.monotonic() < self._until

    async def _round(self, asked: float) -> int:
        """Renew or take the lease: the token this gateway holds after it, or 0."""
        raise NotImplementedError

    async def _give_up(self) -> None:
        """Let another gateway take the lease now (only if this one still holds it)."""
        raise NotImplementedError

    async def release(self) -> None:
        """A gateway leaving hands the lease on at once instead of letting it run out (a
        rollout would leave the fleet without a leader for a lease's length each time)."""
        if not self.is_leader():
            return
        self._token, self._until = 0, 0.0
        try:
            await self._give_up()
        except SparkgateError as exc:
            log.warning("%s not handed on (it runs out by itself): %s", self._what, exc.message)

    async def campaign(self) -> None:
        asked = time.monotonic()
        was = self.is_leader()
        try:
            token = await self._round(asked)
        except SparkgateError as exc:
            log.warning("%s not renewed: %s", self._what, exc.message)
            return  # (is_leader() runs out with the lease it had)
        self._token = token
        self._until = asked + self.lease_seconds * TRUSTED if token else 0.0
        if token and not was:
            log.info("this gateway now looks after the driver fleet (%s, token %d)", self._what, token)
            if self._on_elected is not None:
                self._on_elected()
        elif was and not token:
            log.warning("another gateway now looks after the driver fleet")
