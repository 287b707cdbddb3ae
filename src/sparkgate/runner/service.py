"""The runner: submit, check, cancel and list jobs; keep their state true.

:class:`Runner` is the logic behind the gRPC service (:mod:`.server`), the CLI and the Playground.
Submit validates the manifest and options, records the job PENDING and starts it when a slot is
free (``runner.max_running``); the backend reports each step the work takes (recorded in the job's
history as it comes: Watch streams see it) and how it ended. A supervisor cancels jobs
past their TTL. On start, jobs a previous runner left PENDING or RUNNING are reconciled — their
processes re-adopted, or their outcome recorded — never silently lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sparkgate.aio import TaskSupervisor
from sparkgate.config import RunnerSettings
from sparkgate.errors import BadRequest, ResourceExhausted
from sparkgate.runner.backends.base import ExecutionBackend, OnDone, OnProgress, Outcome, Progress
from sparkgate.runner.jobs import CANCELLED, COMPLETED, FAILED, PENDING, RUNNING, Event, Job, job_id, namespace_for_job
from sparkgate.runner.manifest import (
    Manifest,
    ManifestError,
    Metadata,
    check_size,
    parse_manifest,
    path_problems,
    sandbox_problems,
)
from sparkgate.runner.program import read_result
from sparkgate.runner.store import JobStore
from sparkgate.security.ratelimit import TokenBuckets

log = logging.getLogger(__name__)

#: Options a Submit may carry (its ``map<string,string> options``), and what they mean.
OPTIONS = {
    "sandbox": "true: writes only under the job's scratch output, sources sampled",
    "sandbox_mode": "same as sandbox (the name older clients send)",
    "ttl_seconds": "cancel the job after this many seconds (at most runner.max_ttl_seconds)",
    "sample_limit": "rows per source in sandbox mode",
    "driver": "pool (a warm driver) or own (a driver of its own)",
    "param.<name>": "override spec.parameters.<name>",
}


#: Seconds between looks at a followed job's log for new lines (state changes wake a watch at once).
LOG_FOLLOW_SECONDS = 0.5
#: A watch starts this many bytes before the end of the job's log, and reads at most this much at a time.
LOG_CHUNK = 256 * 1024
#: Log lines longer than this (bytes) are cut when followed.
MAX_LOG_LINE = 64 * 1024


class _LogFollower:
    """Splits a followed log into lines: a line cut by a read is completed by the next one."""

    def __init__(self, log_filter: str) -> None:
        self.log_filter = log_filter
        #: Where the next read starts (first: near the end of the log).
        self.offset = -LOG_CHUNK
        self._partial = b""
        #: Dropping bytes up to the next newline: a line the first read began inside of, or the
        #: rest of one longer than MAX_LOG_LINE.
        self._skipping = False
        self._started = False

    def lines(self, data: bytes, *, final: bool) -> list[str]:
        """The lines ``data`` (read up to :attr:`offset`) completes; ``final``: the log ended."""
        if data and not self._started:
            self._started = True
            self._skipping = self.offset - len(data) > 0
        *complete, rest = (self._partial + data).split(b"\n")
        out = []
        for line in complete:
            if self._skipping:
                self._skipping = False
                continue
            out.append(line)
        if self._skipping:
            rest = b""
        elif len(rest) > MAX_LOG_LINE:
            out.append(rest[:MAX_LOG_LINE])
            rest, self._skipping = b"", True
        if final and rest:
            out.append(rest)
            rest = b""
        self._partial = rest
        return [text for line in out if self.log_filter in (text := line.decode("utf-8", "replace"))]


@dataclass
class JobUpdate:
    """What :meth:`Runner.watch` yields: the job's state when it changed, and new log lines."""

    view: JobView | None
    log_lines: list[str]


@dataclass
class JobView:
    """What Check answers."""

    job: Job
    history: list[Event] = field(default_factory=list)
    logs: str = ""
    result: dict[str, Any] | None = None


class Runner:
    def __init__(
        self,
        settings: RunnerSettings,
        store: JobStore,
        backend: ExecutionBackend,
        environments: list[str],
        *,
        data_roots: Mapping[str, Sequence[str]] | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.backend = backend
        self.environments = environments
        #: Absolute locations jobs may use, by environment (``environments.<env>.data_roots``).
        self.data_roots = dict(data_roots or {})
        self._tasks = TaskSupervisor("runner")
        self._wake = asyncio.Event()
        self._running: set[str] = set()
        self._deadlines: dict[str, float] = {}
        #: Submits per user: bursts up to runner.submits_per_minute_per_user, refilled evenly.
        per_minute = settings.submits_per_minute_per_user
        self._submits = TokenBuckets(per_minute / 60.0, per_minute, "user", "runner.submits_per_minute_per_user")
        self._admitting = asyncio.Lock()
        #: Jobs being launched or adopted now (see _launch): what their backend reports waits for it.
        self._launching: dict[str, asyncio.Future[None]] = {}
        #: Watches of each job, woken when its state changes, and watches open per user.
        self._watches: dict[str, set[asyncio.Event]] = {}
        self._watchers: dict[str, int] = {}

    async def start(self) -> None:
        await asyncio.to_thread(self.store.migrate)
        await self._reconcile()
        self._tasks.spawn("scheduler", self._schedule_loop())
        self._tasks.every("ttl", 1.0, self._enforce_ttl)

    async def close(self, *, stop_jobs: bool = False) -> None:
        """Stop supervising. Jobs keep running and a restarted runner re-adopts them, unless
        ``stop_jobs`` (``sparkgate up`` stopping: the gateway its pool jobs use goes too): then
        running jobs are stopped and end FAILED, saying so."""
        await self._tasks.close()  # first: nothing is started or timed out from here on
        if stop_jobs:
            for jid in sorted(self._running):
                job = await asyncio.to_thread(self.store.get, jid)
                with contextlib.suppress(Exception):
                    await self.backend.cancel(job)
                await self._finish(jid, FAILED, "sparkgate was stopped while the job ran; submit it again")
        await self.backend.close()
        await asyncio.to_thread(self.store.close)

    # -- submit ---------------------------------------------------------------------------------

    def _options(self, options: dict[str, str]) -> dict[str, str]:
        out: dict[str, str] = {}
        for k, v in options.items():
            if k not in OPTIONS and not k.startswith("param."):
                known = ", ".join(OPTIONS)
                raise BadRequest(f"unknown option {k!r} (known: {known})")
            out["sandbox" if k == "sandbox_mode" else k] = v
        if out.get("sandbox", "false") not in ("true", "false"):
            raise BadRequest(f"option sandbox must be true or false, not {out['sandbox']!r}")
        if out.get("driver", "pool") not in ("pool", "own"):
            raise BadRequest(f"option driver must be pool or own, not {out['driver']!r}")
        for k in ("ttl_seconds", "sample_limit"):
            if k in out:
                try:
                    if float(out[k]) <= 0:
                        raise ValueError
                except ValueError:
                    raise BadRequest(f"option {k} must be a positive number, not {out[k]!r}") from None
        ttl = float(out.get("ttl_seconds", self.settings.default_ttl_seconds))
        out["ttl_seconds"] = str(min(ttl, self.settings.max_ttl_seconds))
        if out.get("sandbox") == "true":
            out.setdefault("sample_limit", str(self.settings.sandbox_sample_limit))
        out.setdefault("driver", self.settings.local_driver)
        return out

    async def submit(
        self,
        manifest_text: str,
        *,
        team: str = "",
        environment: str,
        user: str = "",
        job_name: str = "",
        options: dict[str, str] | None = None,
        authorize: Callable[[str, str], None] | None = None,
    ) -> Job:
        """Validate and start a job; ``authorize(team, environment)`` raises if the caller may not."""
        if not manifest_text.strip():
            raise BadRequest("manifest is empty")
        check_size(manifest_text, self.settings.max_manifest_bytes)
        user = user or "anonymous"
        self._submits.take(user, time.monotonic())
        opts = self._options(dict(options or {}))
        params = {k.removeprefix("param."): v for k, v in opts.items() if k.startswith("param.")}
        # Parsing and checking a manifest can take a while (YAML of up to a MiB): not on the loop.
        manifest, resolved = await asyncio.to_thread(_parse_with, manifest_text, params)
        meta = manifest.metadata
        if team and team != meta.team:
            raise BadRequest(f"team {team!r} does not match the manifest's metadata.team {meta.team!r}")
        if job_name and job_name != meta.name:
            raise BadRequest(f"job_name {job_name!r} does not match the manifest's metadata.name {meta.name!r}")
        if environment not in self.environments:
            raise BadRequest(f"unknown environment {environment!r}; known: {', '.join(sorted(self.environments))}")
        problems = path_problems(resolved, environment, self.data_roots.get(environment, ()))
        if opts.get("sandbox") == "true":
            problems += sandbox_problems(resolved)
        if problems:
            raise ManifestError(problems)
        if authorize is not None:
            authorize(meta.team, environment)
        async with self._admitting:  # the queue's bounds hold for submits arriving together
            await asyncio.to_thread(self._check_queue, user)
            return await self._create(manifest_text, meta, environment, user, opts)

    async def _create(self, text: str, meta: Metadata, environment: str, user: str, opts: dict[str, str]) -> Job:
        job = Job(
            id=job_id(meta.team, meta.name),
            name=meta.name,
            team=meta.team,
            environment=environment,
            user=user,
            namespace=namespace_for_job(meta.team, environment, user),
            manifest=text,
            options=opts,
            backend=f"{self.backend.name}-{opts['driver']}" if self.backend.name == "local" else self.backend.name,
        )
        await asyncio.to_thread(self.store.create, job)
        log.info("job %s submitted by %s (team %s, %s)", job.id, user, job.team, environment)
        self._wake.set()
        return job

    def _check_queue(self, user: str) -> None:
        s = self.settings
        mine = self.store.count_jobs(state=PENDING, user=user)
        if mine >= s.max_pending_jobs_per_user:
            raise ResourceExhausted(
                f"{user} has {mine} jobs waiting to start (runner.max_pending_jobs_per_user: "
                f"{s.max_pending_jobs_per_user}); retry when some have started, or cancel some",
                retry_after_seconds=30.0,
            )
        total = self.store.count_jobs(state=PENDING)
        if total >= s.max_pending_jobs:
            raise ResourceExhausted(
                f"{total} jobs are waiting to start (runner.max_pending_jobs: {s.max_pending_jobs}); retry later",
                retry_after_seconds=30.0,
            )

    # -- scheduling -----------------------------------------------------------------------------

    async def _schedule_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            try:
                await self._start_pending()
            except Exception:
                log.exception("runner: starting pending jobs failed; will retry")
                await asyncio.sleep(1)
                self._wake.set()

    async def _start_pending(self) -> None:
        free = self.settings.max_running - len(self._running)
        if free <= 0:
            return
        pending = await asyncio.to_thread(self.store.list_jobs, state=PENDING, limit=1000)
        for job in sorted(pending, key=lambda j: j.created_at)[:free]:
            await self._launch(job)

    async def _launch(self, job: Job) -> None:
        # A Cancel arriving meanwhile waits for this: it then finds the job RUNNING with its
        # process recorded (or not started at all), never half-launched. So do the backend's
        # reports: a step or an end it sees at once is recorded after the start, not before it.
        async with self._launching_now(job.id):
            await self._launch_now(job)

    @contextlib.asynccontextmanager
    async def _launching_now(self, jid: str) -> AsyncIterator[None]:
        launched = self._launching[jid] = asyncio.get_running_loop().create_future()
        try:
            yield
        finally:
            self._launching.pop(jid, None)
            launched.set_result(None)

    async def _launched(self, jid: str) -> None:
        """Wait until the job's launch (or adoption) is recorded, if it is under way."""
        launching = self._launching.get(jid)
        if launching is not None:
            await asyncio.shield(launching)

    async def _launch_now(self, job: Job) -> None:
        job = await asyncio.to_thread(self.store.get, job.id)
        if job.state != PENDING:  # cancelled while it waited
            return
        manifest = parse_manifest(job.manifest)
        self._running.add(job.id)
        try:
            launch = await self.backend.start(job, manifest, self._on_done(job.id), self._on_progress(job.id))
        except Exception as exc:
            self._running.discard(job.id)
            log.exception("job %s could not be started", job.id)
            await self._finish(job.id, FAILED, f"could not start the job: {exc}")
            return
        now = dt.datetime.now(dt.UTC)
        await asyncio.to_thread(
            self.store.transition,
            job.id,
            RUNNING,
            launch.message or f"started on {job.backend}",
            handle=launch.handle,
            log_path=launch.log_path,
            scratch_dir=launch.scratch_dir,
            spark_ui_url=launch.spark_ui_url,
            attempts=job.attempts + 1,
            started_at=now,
        )
        self._changed(job.id)
        self._deadlines[job.id] = time.monotonic() + float(job.options.get("ttl_seconds", 3600))

    def _on_done(self, jid: str) -> OnDone:
        async def done(outcome: Outcome) -> None:
            await self._launched(jid)
            output = str(outcome.details.get("output_path", "")) if outcome.details else ""
            await self._finish(jid, outcome.state, outcome.error, output_path=output)

        return done

    def _on_progress(self, jid: str) -> OnProgress:
        async def progress(step: Progress) -> None:
            await self._launched(jid)
            values: dict[str, Any] = {} if step.handle is None else {"handle": step.handle}
            # (A job cancelled or finished meanwhile stays as it is: transition changes only active jobs.)
            await asyncio.to_thread(self.store.transition, jid, step.state, step.message, **values)
            self._changed(jid)

        return progress

    async def _finish(self, jid: str, state: str, error: str = "", **values: Any) -> Job:
        self._running.discard(jid)
        self._deadlines.pop(jid, None)
        message = "finished" if state == COMPLETED else (error.splitlines()[0][:300] if error else state.lower())
        job = await asyncio.to_thread(
            self.store.transition,
            jid,
            state,
            message,
            error=error,
            finished_at=dt.datetime.now(dt.UTC),
            **values,
        )
        log.info("job %s %s%s", jid, state, f": {message}" if state != COMPLETED else "")
        self._wake.set()
        self._changed(jid)
        return job

    def _changed(self, jid: str) -> None:
        for event in self._watches.get(jid, ()):
            event.set()

    async def _enforce_ttl(self) -> None:
        now = time.monotonic()
        for jid, deadline in list(self._deadlines.items()):
            if now >= deadline:
                job = await asyncio.to_thread(self.store.get, jid)
                ttl = job.options.get("ttl_seconds", "?")
                await self.backend.cancel(job)
                await self._finish(jid, FAILED, f"the job ran longer than its TTL of {float(ttl):.0f}s and was stopped")

    async def _reconcile(self) -> None:
        """Jobs a previous runner left unfinished: re-adopt their work or record how it ended."""
        for job in await asyncio.to_thread(self.store.active):
            if job.state == PENDING:
                continue  # the scheduler starts it
            async with self._launching_now(job.id):  # (its backend's reports wait for this)
                outcome = await self.backend.adopt(job, self._on_done(job.id), self._on_progress(job.id))
                if outcome is None:
                    self._running.add(job.id)
                    started = job.started_at.timestamp() if job.started_at else time.time()
                    ttl = float(job.options.get("ttl_seconds", 3600))
                    self._deadlines[job.id] = time.monotonic() + max(0.0, started + ttl - time.time())
            if outcome is None:
                continue
            output = str(outcome.details.get("output_path", "")) if outcome.details else ""
            await self._finish(job.id, outcome.state, outcome.error, output_path=output)
        self._wake.set()

    # -- check / cancel / list ------------------------------------------------------------------

    async def check(self, jid: str, *, include_logs: bool = False, include_results: bool = False) -> JobView:
        job = await asyncio.to_thread(self.store.get, jid)
        if not job.spark_ui_url and job.handle:
            url = self.backend.ui_url(job)
            if url:  # a pool job's driver is known once its session reached one
                job.spark_ui_url = url
                await asyncio.to_thread(self.store.update, jid, spark_ui_url=url)
                self._changed(jid)
        view = JobView(job, await asyncio.to_thread(self.store.events, jid))
        if include_logs and job.log_path:
            view.logs = await asyncio.to_thread(self.backend.logs, job, self.settings.log_tail_lines)
        if include_results and job.state == COMPLETED and job.scratch_dir:
            view.result = await asyncio.to_thread(read_result, job.scratch_dir)
        return view

    async def cancel(self, jid: str) -> Job:
        """Stop a job (idempotent: a finished job is left as it is)."""
        launching = self._launching.get(jid)
        if launching is not None:
            await asyncio.shield(launching)
        job = await asyncio.to_thread(self.store.get, jid)
        if job.done:
            return job
        await self.backend.cancel(job)
        return await self._finish(jid, CANCELLED, "cancelled by request")

    async def list(self, *, team: str = "", user: str = "", state: str = "", limit: int = 50) -> list[Job]:
        return await asyncio.to_thread(self.store.list_jobs, team=team, user=user, state=state, limit=limit)

    async def watch(self, jid: str, *, user: str = "", log_filter: str = "") -> AsyncGenerator[JobUpdate, None]:
        """Follow a job until it ends: its state now and after every change (pushed by the
        transitions themselves), and each new line of its log (read once, from where the last
        read ended; ``log_filter``: only lines containing it). Raises NotFound for an unknown job,
        ResourceExhausted when ``user`` (or everyone) has too many watches open.

        An update carries at most :data:`LOG_CHUNK` bytes of log; a line longer than
        :data:`MAX_LOG_LINE` is cut there (the rest of it is skipped).
        """
        self._admit_watch(user)
        changed = asyncio.Event()
        self._watches.setdefault(jid, set()).add(changed)
        self._watchers[user] = self._watchers.get(user, 0) + 1
        try:
            view = await self.check(jid)
            yield JobUpdate(view, [])
            job, follow = view.job, _LogFollower(log_filter)
            more = False  # the last read filled a chunk: read again at once
            while True:
                if not more:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(changed.wait(), LOG_FOLLOW_SECONDS)
                state_changed = changed.is_set()
                changed.clear()
                if state_changed:
                    view = await self.check(jid)
                    job = view.job
                lines: list[str] = []
                more = False
                if job.log_path:
                    data, follow.offset = await asyncio.to_thread(self.backend.read_log, job, follow.offset, LOG_CHUNK)
                    lines = follow.lines(data, final=job.done and len(data) < LOG_CHUNK)
                    more = len(data) == LOG_CHUNK
                if state_changed or lines:
                    yield JobUpdate(view if state_changed else None, lines)
                if job.done and not more:
                    return
        finally:
            watches = self._watches.get(jid)
            if watches is not None:
                watches.discard(changed)
                if not watches:
                    del self._watches[jid]
            left = self._watchers.pop(user) - 1
            if left:
                self._watchers[user] = left

    def _admit_watch(self, user: str) -> None:
        if sum(self._watchers.values()) >= self.settings.max_watches:
            raise ResourceExhausted(
                f"the runner has {self.settings.max_watches} job watches open (runner.max_watches); retry later",
                retry_after_seconds=5.0,
            )
        if user and self._watchers.get(user, 0) >= self.settings.max_watches_per_user:
            raise ResourceExhausted(
                f"{user or 'you'} already watch {self.settings.max_watches_per_user} jobs "
                "(runner.max_watches_per_user); close some",
                retry_after_seconds=5.0,
            )

    async def wait(self, jid: str, timeout: float = 600) -> Job:
        """Wait until a job is finished (for tests, benchmarks and ``submit --follow``)."""
        deadline = time.monotonic() + timeout
        while True:
            job = await asyncio.to_thread(self.store.get, jid)
            if job.done:
                return job
            if time.monotonic() > deadline:
                raise TimeoutError(f"job {jid} still {job.state} after {timeout:.0f}s")
            await asyncio.sleep(0.1)


__all__ = ["OPTIONS", "JobView", "Manifest", "Runner"]


def _parse_with(text: str, params: dict[str, str]) -> tuple[Manifest, Manifest]:
    """The manifest, and the manifest with its ``${param}``s resolved (each must resolve now)."""
    manifest = parse_manifest(text)
    return manifest, manifest.with_parameters(params)
