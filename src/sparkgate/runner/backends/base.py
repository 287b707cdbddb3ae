"""How jobs execute: one small protocol, one backend per engine (local processes; Kubernetes)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
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


@dataclass
class Outcome:
    """How a job ended (as the backend saw it)."""

    state: str  # COMPLETED or FAILED (CANCELLED is the runner's own verdict)
    error: str = ""
    details: dict[str, Any] = field(default_factory=dict)


#: Called once with the outcome when the work ends on its own.
OnDone = Callable[[Outcome], Awaitable[None]]


class ExecutionBackend(Protocol):
    name: str

    async def start(self, job: Job, manifest: Manifest, on_done: OnDone) -> Launch:
        """Start the job's work; ``on_done`` is awaited when it ends on its own."""
        ...

    async def cancel(self, job: Job) -> None:
        """Stop the work for good (idempotent): the process or the Spark operation is gone after."""
        ...

    async def adopt(self, job: Job, on_done: OnDone) -> Outcome | None:
        """After a runner restart: watch the job's work again (None), or say how it ended."""
        ...

    def logs(self, job: Job, lines: int) -> str:
        """The tail of the job's driver log."""
        ...

    def read_log(self, job: Job, offset: int, limit: int) -> tuple[bytes, int]:
        """At most ``limit`` bytes of the job's log from ``offset`` (negative: from the end), and
        the offset after them: following a log reads each byte once."""
        ...

    def ui_url(self, job: Job) -> str:
        """The Spark UI of the driver the job runs on, once known ("" until then, or never)."""
        ...

    async def close(self) -> None: ...
