"""The streamed responses: watch events (with bookmarks and a server-side timeout) and followed logs."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncGenerator, Callable
from pathlib import Path
from typing import Any, Protocol

from sparkgate.testing.kube.status import ApiStatusError
from sparkgate.testing.kube.storage import Storage
from sparkgate.testing.kube.watch import BOOKMARK, ERROR, Watch

#: How often a followed log is read again for new lines (seconds).
LOG_POLL_SECONDS = 0.1


class NodeAgent(Protocol):
    """What the API server asks a node's kubelet: where a container's log is, and whether it runs."""

    def log_path(self, pod_uid: str, container: str) -> Path | None: ...

    def running(self, pod_uid: str, container: str) -> bool: ...


def json_bytes(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


async def error_event(exc: ApiStatusError) -> AsyncGenerator[bytes, None]:
    """What the watch cache answers a watch it cannot serve: one ERROR event carrying the Status."""
    yield json_bytes({"type": ERROR, "object": exc.status()}) + b"\n"


async def watch_events(
    storage: Storage, watch: Watch, *, timeout: int | None, bookmark_interval: float | None
) -> AsyncGenerator[bytes, None]:
    """One JSON line per event until ``timeout`` seconds (then the stream ends cleanly) or the watch
    closes; a BOOKMARK every ``bookmark_interval`` seconds while nothing else is pending."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout if timeout else None
    next_bookmark = loop.time() + bookmark_interval if bookmark_interval else None
    try:
        while True:
            moments = [m for m in (deadline, next_bookmark) if m is not None]
            event = await watch.next(max(0.0, min(moments) - loop.time()) if moments else None)
            if event is not None:
                yield json_bytes({"type": event.type, "object": event.object}) + b"\n"
            elif watch.closed or (deadline is not None and loop.time() >= deadline):
                return
            if next_bookmark is not None and loop.time() >= next_bookmark and not watch.pending:
                resource = watch.resource
                mark = {
                    "kind": resource.kind,
                    "apiVersion": resource.api_version,
                    "metadata": {"resourceVersion": storage.resource_version},
                }
                yield json_bytes({"type": BOOKMARK, "object": mark}) + b"\n"
                next_bookmark = loop.time() + (bookmark_interval or 0)
    finally:
        watch.close()


async def follow_log(text: bytes, path: Path, offset: int, running: Callable[[], bool]) -> AsyncGenerator[bytes, None]:
    """``text``, then what the log gets past ``offset``, until the container stops running."""
    yield text
    while True:
        still_running = running()
        more = await asyncio.to_thread(read_from, path, offset)
        if more:
            offset += len(more)
            yield more
        elif not still_running:
            return
        else:
            await asyncio.sleep(LOG_POLL_SECONDS)


def read_tail(path: Path, lines: int | None) -> tuple[bytes, int]:
    """The log's last ``lines`` lines (all with None), and its size. Blocking: run it in a thread."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return b"", 0
    if lines is None:
        return data, len(data)
    kept = data.splitlines(keepends=True)[-lines:] if lines > 0 else []
    return b"".join(kept), len(data)


def read_from(path: Path, offset: int) -> bytes:
    """The log past ``offset``. Blocking: run it in a thread."""
    try:
        with path.open("rb") as f:
            f.seek(offset)
            return f.read()
    except FileNotFoundError:
        return b""
