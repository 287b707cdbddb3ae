"""The call pipeline: its stages in order, and the intent they come to."""

from __future__ import annotations

from collections.abc import Awaitable, Mapping

from sparkgate.config import GatewaySettings
from sparkgate.errors import SparkgateError
from sparkgate.gateway.pipeline.admit import Admit, SharedLimits
from sparkgate.gateway.pipeline.after_call import AfterCall
from sparkgate.gateway.pipeline.call import Call, Caller
from sparkgate.gateway.pipeline.hook import PipelineHook
from sparkgate.gateway.pipeline.identify import Identify
from sparkgate.gateway.pipeline.intents import Answer, Decided, Forward, Intent, Refuse, Wait
from sparkgate.gateway.pipeline.lookup import RELEASE, Found, Joining, Lookup, Stale
from sparkgate.gateway.pipeline.placement import Placement
from sparkgate.gateway.pipeline.releases import Releases
from sparkgate.gateway.pipeline.routing_info import ReadRouting
from sparkgate.gateway.sessions import SessionBook
from sparkgate.security.guard import Guard


class CallPipeline:
    def __init__(
        self,
        settings: GatewaySettings,
        environments: Mapping[str, object],
        book: SessionBook,
        guard: Guard,
        shared_limits: SharedLimits | None = None,
    ) -> None:
        self.book = book
        self.hook: PipelineHook = book.hook
        self.identify = Identify(guard)
        self.lookup = Lookup(book)
        self.routing = ReadRouting(settings, environments, book)
        self.admit = Admit(guard, shared_limits)
        self.releases = Releases(book)
        self.placement = Placement(settings, book)
        self.after_call = AfterCall(book)

    def decide(self, call: Call) -> Intent:
        """The call's intent. Nearly every call is of a placed session whose caller is known: that
        is decided here and now; what must wait comes back as :class:`Wait`."""
        caller = self.identify.now(call)
        if caller is None:
            return Wait(self._identified_later(call))
        return self._decide_for(call, caller)

    def _decide_for(self, call: Call, caller: Caller) -> Intent:
        try:
            step = self._decide(call, caller)
        except SparkgateError as exc:
            return self._decided(call, caller, Refuse(exc))
        if isinstance(step, Forward | Answer):
            return self._decided(call, caller, step)
        return Wait(self._finish(call, caller, step))

    async def decide_now(self, call: Call) -> Decided:
        """:meth:`decide`, waiting for what must wait."""
        intent = self.decide(call)
        return await intent.decision if isinstance(intent, Wait) else intent

    def _decide(self, call: Call, caller: Caller) -> Forward | Answer | Awaitable[Forward | Answer]:
        found = self.lookup.find(call, caller)
        if found is None and self.book.store.shared:
            return self._after_load(call, caller)  # another gateway may have placed it
        return self._found(call, caller, found)

    def _found(
        self, call: Call, caller: Caller, found: Found | Stale | None
    ) -> Forward | Answer | Awaitable[Forward | Answer]:
        if isinstance(found, Found):
            admitting = self.admit.existing(caller, found.route)
            if admitting is not None:
                return self._admitted(admitting, call, caller, found)
            return self._placed(call, caller, found)
        if isinstance(found, Stale):
            return self._after_stale(call, caller, found)
        return self._unplaced(call, caller)

    async def _admitted(self, admitting: Awaitable[None], call: Call, caller: Caller, found: Found) -> Forward | Answer:
        await admitting
        again = self.lookup.find(call, caller)  # (released, lost or moved while the check ran?)
        if isinstance(again, Found):
            return self._placed(call, caller, again)
        return await _settled(self._found(call, caller, again))

    def _placed(self, call: Call, caller: Caller, found: Found) -> Forward | Answer:
        """A call of a placed session, admitted: to its driver (or answered here)."""
        self.book.used(found.route, found.driver)
        if call.method in RELEASE:
            answer = self.releases.check(call, found.route)
            if answer is not None:
                return answer
        return Forward(found.driver, found.route, rewrite_user=caller.rewrite_user)

    async def _after_load(self, call: Call, caller: Caller) -> Forward | Answer:
        loaded = await self.lookup.load(call, caller)
        if loaded is None:  # (placed here meanwhile? then the cache has it now)
            loaded = self.lookup.find(call, caller)
        return await _settled(self._found(call, caller, loaded))

    def _unplaced(self, call: Call, caller: Caller) -> Answer | Awaitable[Forward | Answer]:
        """A session without a route: the rest of the lookup, then routing, admission, placement."""
        unplaced = self.lookup.unplaced(call, caller)
        if isinstance(unplaced, Answer):
            return unplaced
        if isinstance(unplaced, Joining):
            return self.placement.join(unplaced.placement, caller)
        info = self.routing.read(call, caller)
        if isinstance(info, Answer):
            return info
        self.admit.new(caller, info)
        return self.placement.place(call, caller, info)

    async def _after_stale(self, call: Call, caller: Caller, stale: Stale) -> Forward | Answer:
        # A driver gone without a death report: the same as a reported death.
        await self.book.lose(stale.route, f"driver {stale.route.driver_id} is gone")
        return await _settled(self._unplaced(call, caller))

    async def _identified_later(self, call: Call) -> Decided:
        try:
            caller = await self.identify.verify(call)
        except SparkgateError as exc:
            decision = Refuse(exc)
            self.hook.decided(call, None, decision)
            return decision
        intent = self._decide_for(call, caller)
        return await intent.decision if isinstance(intent, Wait) else intent

    async def _finish(self, call: Call, caller: Caller, rest: Awaitable[Forward | Answer]) -> Decided:
        try:
            decided: Decided = await rest
        except SparkgateError as exc:
            decided = Refuse(exc)
        return self._decided(call, caller, decided)

    def _decided(self, call: Call, caller: Caller, decision: Decided) -> Decided:
        self.hook.decided(call, caller.identity, decision)
        return decision


async def _settled(step: Forward | Answer | Awaitable[Forward | Answer]) -> Forward | Answer:
    """A stage's outcome, once what it waits for is done."""
    return step if isinstance(step, Forward | Answer) else await step
