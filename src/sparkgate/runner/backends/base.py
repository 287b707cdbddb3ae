"""How jobs execute: one small protocol, one backend per engine (local processes; Kubernetes)."""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from sparkgate.runner.jobs import Job
from sparkgate.runner.manifest import Manifest


@dataclass
class Launch:
    """What a backend started: how to find it again, and where to look."""

    handle: dict[str, Any]
    log_path: str = ""
    scratch_dir: str = ""
    spark_ui_url: str = ""
    #: What the job's history says of the start ("" : "started on <backend>").
    message: str = ""


@dataclass
class Progress:
    """A step the work took before it ended (an engine that reports more than start and end)."""

    #: The job's state after the step: RUNNING, or a state of the engine's the runner keeps as it
    #: is (SUSPENDED, ...); never PENDING (the job left the runner's queue) nor a final state.
    state: str
    #: What happened, for the job's history (the engine's own word for it first).
    message: str
    #: What the backend needs from now on to find the work again (replaces the job's handle);
    #: None: unchanged.
    handle: dict[str, Any] | None = None


@dataclass
class Outcome:
    """How a job ended (as the backend saw it)."""

    state: str  # COMPLETED or FAILED (CANCELLED is the runner's own verdict)
    error: str = ""
    details: dict[str, Any] = field(default_factory=dict)


#: Called once with the outcome when the work ends on its own.
OnDone = Callable[[Outcome], Awaitable[None]]
#: Called with each step of the work, in order, until it ends (never after ``OnDone``).
OnProgress = Callable[[Progress], Awaitable[None]]


class ExecutionBackend(Protocol):
    name: str

    async def start(self, job: Job, manifest: Manifest, on_done: OnDone, on_progress: OnProgress) -> Launch:
        """Start the job's work; ``on_progress`` is awaited at each step it takes, ``on_done`` when
        it ends on its own. Neither is awaited before ``start`` returns."""
        ...

    async def cancel(self, job: Job) -> None:
        """Stop the work for good (idempotent): the process or the Spark operation is gone after."""
        ...

    async def adopt(self, job: Job, on_done: OnDone, on_progress: OnProgress) -> Outcome | None:
        """After a runner restart: watch the job's work again (None), or say how it ended."""
        ...

    def logs(self, job: Job, lines: int) -> str:
        """The tail of the job's driver log (a file read: the runner calls it in a thread)."""
        ...

    def read_log(self, job: Job, offset: int, limit: int) -> tuple[bytes, int]:
        """At most ``limit`` bytes of the job's log from ``offset`` (negative: from the end), and
        the offset after them: following a log reads each byte once (in a thread, as ``logs``)."""
        ...

    def ui_url(self, job: Job) -> str:
        """The Spark UI of the driver the job runs on, once known ("" until then, or never)."""
        ...

    async def close(self) -> None: ...


def read_log_file(path: str | Path, offset: int, limit: int) -> tuple[bytes, int]:
    """:meth:`ExecutionBackend.read_log` of a log kept in a file that only grows."""
    try:
        with open(path, "rb") as f:
            size = f.seek(0, os.SEEK_END)
            start = max(0, size + offset) if offset < 0 else min(offset, size)
            f.seek(start)
            data = f.read(limit)
    except FileNotFoundError:
        return b"", max(offset, 0)
    return data, start + len(data)
