"""An execution backend for runner tests and the Playground's: jobs "run" until told how they end."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from sparkgate.runner.backends.base import Launch, OnDone, OnProgress, Outcome, Progress
from sparkgate.runner.jobs import COMPLETED, FAILED, Job
from sparkgate.runner.manifest import Manifest


class FakeExecution:
    name = "fake"

    def __init__(self, *, auto_complete: float | None = None, scratch_root: Path | None = None) -> None:
        """``auto_complete``: seconds after which every job COMPLETES on its own (None: never);
        ``scratch_root``: where jobs get a scratch directory (for results written by :meth:`finish`)."""
        self.auto_complete = auto_complete
        self.scratch_root = scratch_root
        self.started: list[str] = []
        self.cancelled: list[str] = []
        self.running: dict[str, OnDone] = {}
        self.progress: dict[str, OnProgress] = {}
        #: Outcomes adopt() gives for jobs of a previous runner (job id → Outcome; absent: re-adopt).
        self.after_restart: dict[str, Outcome] = {}
        self.fail_start: str | None = None
        #: Seconds start() takes (a process that is slow to start).
        self.start_delay = 0.0
        self.scratch: dict[str, str] = {}
        #: Lines each job's log has after its first one (:meth:`write_log`).
        self.log_lines: dict[str, list[str]] = {}
        self._timers: list[asyncio.TimerHandle] = []

    async def start(self, job: Job, manifest: Manifest, on_done: OnDone, on_progress: OnProgress) -> Launch:
        if self.fail_start:
            raise RuntimeError(self.fail_start)
        self.started.append(job.id)
        if self.start_delay:
            await asyncio.sleep(self.start_delay)
        self.running[job.id] = on_done
        self.progress[job.id] = on_progress
        if self.auto_complete is not None:
            loop = asyncio.get_running_loop()
            self._timers.append(loop.call_later(self.auto_complete, lambda: asyncio.ensure_future(self.finish(job.id))))
        scratch = ""
        if self.scratch_root is not None:
            d = self.scratch_root / job.id
            d.mkdir(parents=True, exist_ok=True)
            scratch = str(d)
        self.scratch[job.id] = scratch
        return Launch(
            handle={"fake": job.id}, log_path=f"/fake/{job.id}.log", scratch_dir=scratch, spark_ui_url="http://ui"
        )

    async def step(self, job_id: str, state: str, message: str, handle: dict[str, Any] | None = None) -> None:
        """The job's work takes a step (an engine's own state, say) before it ends."""
        on_progress = self.progress.get(job_id)
        if on_progress is not None and job_id in self.running:
            await on_progress(Progress(state, message, handle))

    async def finish(
        self, job_id: str, state: str = COMPLETED, error: str = "", result: dict[str, Any] | None = None, **details: Any
    ) -> None:
        """End a job; ``result`` (preview, count, schema, output_path) is written as the job program would."""
        if result is not None and self.scratch.get(job_id):
            (Path(self.scratch[job_id]) / "result.json").write_text(json.dumps(result))
        on_done = self.running.pop(job_id, None)
        if on_done is not None:
            await on_done(Outcome(state, error if state == FAILED else "", details))

    async def cancel(self, job: Job) -> None:
        self.cancelled.append(job.id)
        self.running.pop(job.id, None)

    async def adopt(self, job: Job, on_done: OnDone, on_progress: OnProgress) -> Outcome | None:
        if job.id in self.after_restart:
            return self.after_restart[job.id]
        self.running[job.id] = on_done
        self.progress[job.id] = on_progress
        return None

    def write_log(self, job_id: str, line: str) -> None:
        """The job's log gets a line."""
        self.log_lines.setdefault(job_id, []).append(line)

    def _log(self, job_id: str) -> str:
        return "".join(f"{line}\n" for line in [f"log of {job_id}", *self.log_lines.get(job_id, [])])

    def logs(self, job: Job, lines: int) -> str:
        return "\n".join(self._log(job.id).splitlines()[-lines:])

    def read_log(self, job: Job, offset: int, limit: int) -> tuple[bytes, int]:
        data = self._log(job.id).encode()
        start = max(0, len(data) + offset) if offset < 0 else min(offset, len(data))
        chunk = data[start : start + limit]
        return chunk, start + len(chunk)

    def ui_url(self, job: Job) -> str:
        return ""

    async def close(self) -> None:
        for t in self._timers:
            t.cancel()
