"""Jobs: run, watch, cancel, see results, and check a manifest without running it.

Everything goes to the Spark Runner over gRPC; a caller sees and touches only their own jobs.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter
from fastapi.responses import StreamingResponse

from sparkgate.errors import Conflict, SparkgateError
from sparkgate.playground.deps import CurrentSettings, Runner, User, own_job
from sparkgate.playground.models import (
    CancelResponse,
    ErrorOut,
    JobStatus,
    Results,
    RunRequest,
    RunResponse,
    Validation,
    job_status,
    problems_out,
)
from sparkgate.runner.jobs import PROGRESS_MARK, TERMINAL
from sparkgate.runner.manifest import ManifestError, Problem, check_manifest, check_size, path_problems

router = APIRouter()
#: Seconds a job's event stream may be quiet before it carries a comment (proxies close idle streams).
KEEPALIVE_SECONDS = 15.0
#: What a route on one job answers when it is another user's, or unknown.
MINE: dict[int | str, dict[str, Any]] = {403: {"model": ErrorOut}, 404: {"model": ErrorOut}}


@router.post("/run", response_model=RunResponse, summary="Run a manifest")
@router.post("/submit", response_model=RunResponse, summary="Submit a manifest (same as run)")
async def run(req: RunRequest, user: User, runner: Runner, settings: CurrentSettings) -> RunResponse:
    check_size(req.manifest, settings.runner.max_manifest_bytes)
    manifest, problems = await asyncio.to_thread(check_manifest, req.manifest)
    if manifest is None:
        raise ManifestError(problems)
    options = dict(req.options)
    if req.sandbox:
        options["sandbox"] = "true"
    resp = await runner.submit(
        user.metadata,
        manifest=req.manifest,
        team=req.team or manifest.metadata.team,
        environment=req.environment,
        user=user.name,
        job_name=manifest.metadata.name,
        options=options,
    )
    return RunResponse(job_id=resp.job_id, namespace=resp.namespace, state=resp.state, backend=resp.backend)


@router.get("/status/{job_id}", response_model=JobStatus, summary="A job's state and history", responses=MINE)
async def status(job_id: str, user: User, runner: Runner, logs: bool = False) -> JobStatus:
    return job_status(await own_job(runner, job_id, user, logs=logs), logs=logs)


@router.post("/cancel/{job_id}", response_model=CancelResponse, summary="Stop a job (idempotent)", responses=MINE)
async def cancel(job_id: str, user: User, runner: Runner) -> CancelResponse:
    await own_job(runner, job_id, user)
    resp = await runner.cancel(job_id, user.metadata)
    return CancelResponse(job_id=job_id, state=resp.state)


@router.get(
    "/results/{job_id}",
    response_model=Results,
    summary="A finished job's preview",
    responses={**MINE, 409: {"model": ErrorOut}},
)
async def results(job_id: str, user: User, runner: Runner) -> Results:
    resp = await own_job(runner, job_id, user, results=True)
    if resp.state != "COMPLETED":
        raise Conflict(f"job {job_id} is {resp.state}; results exist once it is COMPLETED")
    schema = json.loads(resp.result_schema or "{}")
    return Results(
        job_id=job_id,
        count=resp.result_count,
        columns=[
            {"name": f["name"], "type": f["type"] if isinstance(f["type"], str) else json.dumps(f["type"])}
            for f in schema.get("fields", [])
        ],
        preview=json.loads(resp.result_preview or "[]"),
        output_path=resp.output_path,
    )


@router.get("/jobs", response_model=list[JobStatus], summary="My jobs, newest first")
async def jobs(user: User, runner: Runner, limit: int = 50) -> list[JobStatus]:
    resp = await runner.list(user.metadata, user=user.name, limit=max(1, min(limit, 500)))
    return [job_status(j) for j in resp.jobs]


@router.post("/validate", response_model=Validation, summary="Check a manifest without running it")
async def validate(req: RunRequest, user: User, settings: CurrentSettings) -> Validation:
    check_size(req.manifest, settings.runner.max_manifest_bytes)
    manifest, problems = await asyncio.to_thread(check_manifest, req.manifest)
    environments = sorted(settings.environments)
    if req.environment not in environments:
        problems.append(Problem("environment", f"must be one of {', '.join(environments)}"))
    elif manifest is not None:  # where it reads and writes, as Submit will check it
        roots = settings.environments[req.environment].data_roots
        try:
            problems += path_problems(manifest.with_parameters(), req.environment, roots)
        except SparkgateError as exc:  # a ${param} without a value
            problems.append(Problem("spec.parameters", exc.message))
    if manifest is None or problems:
        return Validation(valid=False, problems=problems_out(problems))
    return Validation(valid=True, job_name=manifest.metadata.name, team=manifest.metadata.team)


@router.get(
    "/jobs/{job_id}/events",
    summary="Live state and log lines (server-sent events)",
    responses={200: {"content": {"text/event-stream": {}}}, **MINE},
)
async def events(job_id: str, user: User, runner: Runner) -> StreamingResponse:
    await own_job(runner, job_id, user)

    async def stream() -> AsyncIterator[str]:
        # The runner pushes state changes as they happen and the job program's new log lines;
        # a comment every KEEPALIVE_SECONDS keeps proxies from closing a quiet stream.
        watch = runner.watch(job_id, log_filter=PROGRESS_MARK, metadata=user.metadata)
        events = aiter(watch)
        next_event: asyncio.Future[Any] | None = None
        try:
            while True:
                next_event = next_event or asyncio.ensure_future(anext(events))
                done, _ = await asyncio.wait({next_event}, timeout=KEEPALIVE_SECONDS)
                if not done:
                    yield ": keepalive\n\n"
                    continue
                try:
                    event = next_event.result()
                except StopAsyncIteration:
                    return
                except SparkgateError as exc:  # the response has started: say why in the stream
                    yield f"event: error\ndata: {json.dumps({'error': exc.message})}\n\n"
                    return
                finally:
                    if next_event.done():
                        next_event = None
                for line in event.log_lines:
                    yield f"event: log\ndata: {json.dumps(line)}\n\n"
                if event.HasField("state"):
                    yield f"event: state\ndata: {job_status(event.state).model_dump_json()}\n\n"
                    if event.state.state in TERMINAL:
                        yield "event: end\ndata: {}\n\n"
                        return
        finally:
            if next_event is not None:
                next_event.cancel()  # the client left while the runner had nothing new
                await asyncio.wait({next_event})
            await watch.aclose()

    return StreamingResponse(stream(), media_type="text/event-stream", headers={"cache-control": "no-cache"})
