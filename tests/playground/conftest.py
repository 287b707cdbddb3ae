"""A Playground app in front of a real runner (gRPC, SQLite) whose jobs a fake backend runs."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from sparkgate.config import RunnerSettings, load_settings
from sparkgate.playground.app import create_app
from sparkgate.runner.server import RunnerServer
from sparkgate.runner.service import Runner
from sparkgate.runner.store import JobStore
from sparkgate.testing.fake_execution import FakeExecution

RESULT = {
    "view": "daily",
    "preview": [{"store_id": 3, "revenue": 99.5}, {"store_id": 1, "revenue": 12.0}],
    "count": 2,
    "schema": {
        "type": "struct",
        "fields": [{"name": "store_id", "type": "integer"}, {"name": "revenue", "type": "double"}],
    },
    "output_path": "/out/daily",
}


@dataclass
class Rig:
    app: FastAPI
    client: httpx.AsyncClient
    fake: FakeExecution
    runner: Runner

    async def run(self, user: str = "alice@example.com", **body: Any) -> str:
        from tests.runner.test_manifest import GOOD

        r = await self.client.post(
            "/api/v1/playground/run", json={"manifest": GOOD, **body}, headers={"x-user-email": user}
        )
        assert r.status_code == 200, r.text
        return str(r.json()["job_id"])


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    async with playground(tmp_path) as made:
        yield made


@contextlib.asynccontextmanager
async def playground(tmp_path: Path, **runner_settings: Any) -> AsyncIterator[Rig]:
    fake = FakeExecution(scratch_root=tmp_path / "scratch")
    runner = Runner(
        RunnerSettings(port=0, **runner_settings),
        JobStore(f"sqlite:///{tmp_path / 'runner.db'}"),
        fake,
        ["local", "prod"],
    )
    await runner.start()
    settings = load_settings(None, {}, state_dir=tmp_path, audit={"enabled": False})
    try:
        async with RunnerServer(runner, "127.0.0.1", 0) as server:
            app = create_app(settings, f"127.0.0.1:{server.port}")
            async with (
                app.router.lifespan_context(app),
                httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://playground") as client,
            ):
                yield Rig(app, client, fake, runner)
    finally:
        await runner.close()
