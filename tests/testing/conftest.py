"""What the tests of the Kubernetes test double share: a fake API server per test."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from sparkgate.testing.kube import FakeKubeApi


@pytest.fixture
async def api() -> AsyncIterator[FakeKubeApi]:
    """A fake API server (bookmarks every 0.2 s, so watch tests see them soon)."""
    async with FakeKubeApi(bookmark_interval=0.2) as server:
        yield server
