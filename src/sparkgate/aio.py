"""Asyncio helpers: supervised background tasks, and child processes (and their ports, liveness, logs).

Every long-lived or fire-and-forget task is started through :class:`TaskSupervisor`, which names it,
keeps a reference (so it is not garbage-collected mid-flight), logs its failure with a traceback,
and cancels whatever is left on shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import subprocess
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


class TaskSupervisor:
    def __init__(self, owner: str) -> None:
        self._owner = owner
        self._tasks: set[asyncio.Task[Any]] = set()
        self.closed = False

    def spawn(self, name: str, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro, name=f"{self._owner}:{name}")
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def every(self, name: str, interval: float, fn: Callable[[], Awaitable[Any]]) -> asyncio.Task[Any]:
        """Run ``fn`` every ``interval`` seconds; a failing round is logged and the loop goes on."""

        async def loop() -> None:
            while True:
                await asyncio.sleep(interval)
                try:
                    await fn()
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("%s: periodic task %s failed; will retry", self._owner, name)

        return self.spawn(name, loop())

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            log.error("task %s failed", task.get_name(), exc_info=exc)

    @property
    def running(self) -> int:
        return len(self._tasks)

    async def close(self) -> None:
        self.closed = True
        tasks = list(self._tasks)
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t


async def wait_readable(fd: int) -> None:
    """Wait until ``fd`` is readable (a pidfd whose process exited, a socket with data), on the loop."""
    loop = asyncio.get_running_loop()
    ready: asyncio.Future[None] = loop.create_future()

    def readable() -> None:
        if not ready.done():
            ready.set_result(None)

    loop.add_reader(fd, readable)
    try:
        await ready
    finally:
        loop.remove_reader(fd)


class Child:
    """A child process started with :func:`spawn`, awaited without a thread or a SIGCHLD handler."""

    def __init__(self, popen: subprocess.Popen[bytes]) -> None:
        self.popen = popen
        self.pid = popen.pid

    @property
    def returncode(self) -> int | None:
        return self.popen.poll()

    async def wait(self) -> int:
        """Wait for the process to exit (any number of waiters; each watches a pidfd)."""
        code = self.popen.poll()
        if code is not None:
            return code
        fd = os.pidfd_open(self.pid)
        try:
            await wait_readable(fd)
        finally:
            os.close(fd)
        return self.popen.wait()

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.popen.kill()

    async def communicate(self, stdin: bytes | None = None) -> tuple[bytes, bytes]:
        """Send ``stdin`` (if piped), read stdout/stderr (if piped) to the end and wait; in a thread."""
        out, err = await asyncio.to_thread(self.popen.communicate, stdin)
        return out or b"", err or b""


async def spawn(*cmd: str, **popen_kwargs: Any) -> Child:
    """Start a process with :class:`subprocess.Popen` (vfork/exec), not the event loop's fork.

    Forking a process whose gRPC threads are busy runs gRPC's fork handlers in the child, which can
    crash it before ``exec`` (seen here: a job process dead with SIGSEGV at once). ``subprocess``
    uses ``vfork`` where it can, which runs no fork handlers.
    """
    popen_kwargs.setdefault("close_fds", True)
    return Child(subprocess.Popen(list(cmd), **popen_kwargs))  # noqa: ASYNC220 - vfork+exec returns at once


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def pid_alive(pid: int) -> bool:
    """True if ``pid`` runs (a zombie counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie still "exists"; treat it as dead.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][:1] != "Z"
    except OSError:
        return True


def tail(path: str | Path | None, lines: int = 20) -> str:
    if not path:
        return ""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 16384))
            return "\n".join(f.read().decode("utf-8", "replace").splitlines()[-lines:])
    except OSError:
        return ""
