"""A call pipeline and session table on an in-memory provider (no gRPC, no Spark)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from sparkgate.clusters.manager import ClusterManager
from sparkgate.config import Settings, load_settings
from sparkgate.connect import wire
from sparkgate.gateway.affinity import MemoryAffinityStore, Route
from sparkgate.gateway.pipeline.call import Call, Metadata
from sparkgate.gateway.pipeline.decide import CallPipeline
from sparkgate.gateway.pipeline.hook import PipelineHook
from sparkgate.gateway.pipeline.intents import Answer, Forward, Refuse
from sparkgate.gateway.sessions import SessionBook
from sparkgate.security.guard import Guard
from sparkgate.testing.fake_provider import FakeProvider


@dataclass
class Rig:
    book: SessionBook
    pipeline: CallPipeline

    @staticmethod
    def make(settings: Settings, clusters: ClusterManager, guard: Guard | None = None) -> Rig:
        book = SessionBook(settings.gateway, MemoryAffinityStore(), clusters, PipelineHook())
        guard = guard or Guard(settings.auth, {}, settings.rate_limits)
        return Rig(book, CallPipeline(settings.gateway, settings.environments, book, guard))

    async def resolve(
        self, method: str, metadata: Metadata, ids: wire.RequestIds, request: bytes | None, peer: str | None = None
    ) -> Forward | Answer:
        """The call's decision, waiting for what must wait; a refusal raises its error."""
        decided = await self.pipeline.decide_now(Call(method, metadata, ids, request, peer))
        if isinstance(decided, Refuse):
            raise decided.error
        return decided

    async def clone(self, source: Route, new_session_id: str) -> None:
        """A CloneSession of ``source`` answered OK with ``new_session_id``."""
        ids = wire.RequestIds(source.session_id, source.user_id, new_session_id=new_session_id)
        await self.pipeline.after_call.run("CloneSession", source, ids, 0, b"")


@pytest.fixture
async def gw() -> AsyncIterator[Rig]:
    s = load_settings(None, {})
    cm = ClusterManager(FakeProvider(), pool_size=0)
    await cm.start()
    yield Rig.make(s, cm)
    await cm.close()
