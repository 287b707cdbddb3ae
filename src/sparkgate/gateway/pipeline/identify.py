"""Stage 1: who makes the call — once per call.

A caller whose credential the guard verified recently is known at once; anyone else is verified
(a token checked, an OIDC key fetched), which may wait.
"""

from __future__ import annotations

from sparkgate.errors import SparkgateError
from sparkgate.gateway.pipeline.call import Call, Caller
from sparkgate.security.guard import Guard


class Identify:
    def __init__(self, guard: Guard) -> None:
        self._guard = guard

    def now(self, call: Call) -> Caller | None:
        """The caller, if known without waiting (None: :meth:`verify` must run)."""
        try:
            who = self._guard.cached(call.metadata, call.peer, call.ids.user_id)
        except SparkgateError:
            return None  # verify() fails it, with the audit record the guard writes
        return None if who is None else Caller.of(who, call.ids)

    async def verify(self, call: Call) -> Caller:
        """Check the call's credentials; raises Unauthenticated (audited by the guard)."""
        who = await self._guard.identify(call.metadata, call.peer, call.ids.user_id, method=call.method)
        return Caller.of(who, call.ids)
