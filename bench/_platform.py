"""The whole local platform on an event loop of its own thread, for benchmarks that drive it from
synchronous code (pyspark's client is synchronous). Shared by ``pool_bench.py`` and ``runner_bench.py``."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


class PlatformThread:
    """``Platform(settings)`` entered on a background loop; ``settings`` override the bench defaults
    (gateway on a free loopback port, admin endpoint off)."""

    def __init__(self, state_dir: Path, *, timeout: float = 300, **settings: Any) -> None:
        from sparkgate.aio import free_port
        from sparkgate.config import load_settings
        from sparkgate.platform import Platform

        self.timeout = timeout
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        base: dict[str, Any] = {
            "gateway": {"host": "127.0.0.1", "port": free_port()},
            "admin": {"enabled": False},
        }
        self.platform = Platform(load_settings(None, {}, state_dir=state_dir, **(base | settings)))
        self.run(self.platform.__aenter__())

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout or self.timeout)

    def close(self) -> None:
        self.run(self.platform.__aexit__(None, None, None))
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
