"""Schemathesis against the Playground's OpenAPI spec: whatever it sends, no 5xx.

The runner behind the app is real (gRPC, SQLite, a fake backend) and runs on its own event loop
thread, because schemathesis drives the ASGI app synchronously.
"""

from __future__ import annotations

import asyncio
import tempfile
import threading
from pathlib import Path
from typing import Any

import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from sparkgate.config import RunnerSettings, load_settings
from sparkgate.playground.app import create_app
from sparkgate.runner.server import RunnerServer
from sparkgate.runner.service import Runner
from sparkgate.runner.store import JobStore
from sparkgate.testing.fake_execution import FakeExecution


class _RunnerThread:
    def __init__(self, root: Path) -> None:
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, daemon=True, name="fuzz-runner").start()

        async def start() -> RunnerServer:
            fake = FakeExecution(auto_complete=0.05, scratch_root=root / "scratch")
            runner = Runner(
                RunnerSettings(port=0), JobStore(f"sqlite:///{root / 'runner.db'}"), fake, ["local", "prod"]
            )
            await runner.start()
            server = RunnerServer(runner, "127.0.0.1", 0)
            await server.start()
            return server

        self.server = asyncio.run_coroutine_threadsafe(start(), self.loop).result(30)


_root = Path(tempfile.mkdtemp(prefix="playground-fuzz-"))
_runner = _RunnerThread(_root)
_app = create_app(
    load_settings(None, {}, state_dir=_root, audit={"enabled": False}), f"127.0.0.1:{_runner.server.port}"
)
schema = schemathesis.openapi.from_asgi("/openapi.json", _app)


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_server_errors(case: Any) -> None:
    case.call_and_validate(checks=[not_a_server_error])
