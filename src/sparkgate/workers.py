"""``sparkgate gateway --workers N``: N gateway processes on one port, using every core of a host.

One Python event loop uses one core. Like nginx's worker processes, N processes bind the same
port with ``SO_REUSEPORT`` and the kernel spreads new connections over them. Each is a replica
exactly as on another host — it shares sessions, drivers and the fleet lease through
``state.backend: redis`` — so a session placed through one worker is served by any other.

This process only supervises: it starts the workers, restarts one that dies (a crash costs its
connections only; their clients reconnect to a sibling), and passes SIGTERM/SIGINT on. The admin
endpoints (``/status``, ``/readyz``, ``/metrics``) are served by the first worker; ``/status``
lists every worker as a replica. A worker dies with this process (``PR_SET_PDEATHSIG``), so a
``kill -9`` of the supervisor leaves no orphan serving the port.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence

from sparkgate.config import Settings
from sparkgate.errors import ConfigError

log = logging.getLogger(__name__)

#: Set in each worker's environment: a worker never starts workers of its own.
WORKER_ENV = "SPARKGATE_GATEWAY_WORKER"
#: A worker that dies sooner than this after starting counts as failing to start.
QUICK_EXIT_SECONDS = 10.0
#: Quick exits in a row after which the supervisor gives up (a broken config, a port taken).
MAX_QUICK_EXITS = 5


def worker_count(settings: Settings, requested: int | None = None) -> int:
    """How many worker processes to run (``--workers``, else ``gateway.workers``, else the default)."""
    n = requested or settings.gateway.workers
    if n is None:
        # The cores this process may run on (a container's CPU set, not the host's count).
        n = len(os.sched_getaffinity(0)) if settings.state.backend == "redis" else 1
    if n > 1 and settings.state.backend != "redis":
        raise ConfigError(
            f"{n} gateway workers need state.backend: redis (workers share sessions and drivers "
            "through it); set state.backend and state.redis_url, or run one worker"
        )
    if n > 1 and settings.gateway.port == 0:
        raise ConfigError("gateway workers share one port: set gateway.port (or --port) to a fixed port, not 0")
    return n


def _die_with(parent: int) -> Callable[[], None]:
    def before_exec() -> None:
        """In the worker, before exec: be sent SIGTERM when the supervisor dies, however it dies."""
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        if os.getppid() != parent:  # it died before the line above: no signal will come
            os._exit(1)

    return before_exec


class Workers:
    """Runs ``argv`` as ``n`` worker processes until :meth:`stop` (each gets its index in its
    environment: ``SPARKGATE__GATEWAY__REUSE_PORT``, and the admin endpoints on the first only)."""

    def __init__(self, argv: Sequence[str], n: int, grace_seconds: float = 30.0) -> None:
        self.argv = list(argv)
        self.n = n
        #: Seconds a worker may take to stop (drain its calls, maybe stop drivers) before SIGKILL.
        self.grace_seconds = grace_seconds
        self.procs: list[subprocess.Popen[bytes] | None] = [None] * n
        self._started: list[float] = [0.0] * n
        self._quick_exits = 0
        self._stopping = False

    def _env(self, index: int) -> dict[str, str]:
        env = dict(os.environ)
        env[WORKER_ENV] = str(index + 1)
        env["SPARKGATE__GATEWAY__REUSE_PORT"] = "true"
        if index > 0:
            env["SPARKGATE__ADMIN__ENABLED"] = "false"
        return env

    def _start(self, index: int) -> None:
        # (fork, not vfork: preexec_fn; fine here, this process runs no threads)
        proc = subprocess.Popen(self.argv, env=self._env(index), preexec_fn=_die_with(os.getpid()))  # noqa: PLW1509
        self.procs[index] = proc
        self._started[index] = time.monotonic()
        log.info("gateway worker %d/%d started (pid %d)", index + 1, self.n, proc.pid)

    async def run(self) -> int:
        """Start the workers and keep them running until :meth:`stop`; the exit code to return."""
        for i in range(self.n):
            self._start(i)
        while not self._stopping:
            await asyncio.sleep(0.2)
            for i, proc in enumerate(self.procs):
                if proc is None or proc.poll() is None or self._stopping:
                    continue
                quick = time.monotonic() - self._started[i] < QUICK_EXIT_SECONDS
                self._quick_exits = self._quick_exits + 1 if quick else 0
                log.error("gateway worker %d (pid %d) exited with code %s", i + 1, proc.pid, proc.returncode)
                if self._quick_exits >= MAX_QUICK_EXITS:
                    log.error("gateway workers keep exiting at start: giving up (see their errors above)")
                    await self.stop()
                    return 1
                await asyncio.sleep(min(5.0, 0.5 * self._quick_exits))
                if not self._stopping:
                    self._start(i)
        return 0

    async def stop(self) -> None:
        """SIGTERM every worker (each drains its calls), then SIGKILL what is left after the grace."""
        self._stopping = True
        live = [p for p in self.procs if p is not None and p.poll() is None]
        for p in live:
            with contextlib.suppress(ProcessLookupError):
                p.terminate()
        deadline = time.monotonic() + self.grace_seconds
        while any(p.poll() is None for p in live) and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        for p in live:
            if p.poll() is None:
                p.kill()
                p.wait()


async def supervise(argv: Sequence[str], n: int, grace_seconds: float = 30.0) -> int:
    """Run ``n`` workers of ``argv`` until SIGTERM or SIGINT."""
    workers = Workers(argv, n, grace_seconds)
    loop = asyncio.get_running_loop()
    run = asyncio.ensure_future(workers.run())
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    waiting = asyncio.ensure_future(stop.wait())
    await asyncio.wait([run, waiting], return_when=asyncio.FIRST_COMPLETED)
    if not run.done():
        await workers.stop()
    waiting.cancel()
    return await run


def worker_argv(cli_args: Sequence[str]) -> list[str]:
    """The command line of one worker: this ``sparkgate gateway`` command without ``--workers``."""
    out: list[str] = []
    skip = False
    for arg in cli_args:
        if skip:
            skip = False
            continue
        if arg == "--workers":
            skip = True
            continue
        if arg.startswith("--workers="):
            continue
        out.append(arg)
    return [sys.executable, "-m", "sparkgate.cli", *out]
