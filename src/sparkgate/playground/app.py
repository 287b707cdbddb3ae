"""The Playground's REST API (FastAPI) and the web UI it serves.

``create_app(settings, runner_target)`` builds the app: the job endpoints under
``/api/v1/playground`` (``run``/``submit``, ``status/{id}``, ``cancel/{id}``, ``results/{id}``)
plus what the UI needs (``jobs``, ``validate``, ``jobs/{id}/events`` as server-sent events,
``samples``, ``environments``), the UI at ``/`` and OpenAPI at ``/docs``. Everything about jobs
goes to the Spark Runner over gRPC; the Playground never starts Spark or calls the gateway.

Who is calling: with ``auth.mode`` on, the bearer token (OIDC or static, as the gateway checks
them); with auth off (development), the ``X-User-Email`` header. Users see and touch only their
own jobs (403 otherwise). Errors are JSON ``{"error": ..., "problems": [...]}`` with the status
the error tree gives: 400 bad manifest (each problem with its path and line), 404 unknown job,
409 results before completion, 403 another user's job, 503 runner unreachable.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline
from google.protobuf.json_format import MessageToDict
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sparkgate.config import Settings
from sparkgate.errors import (
    BadRequest,
    Conflict,
    PermissionDenied,
    SparkgateError,
    Unauthenticated,
)
from sparkgate.runner.client import RunnerClient
from sparkgate.runner.jobs import TERMINAL
from sparkgate.runner.manifest import ManifestError, Problem, check_manifest, check_size, path_problems
from sparkgate.security.guard import Guard, build_guard

log = logging.getLogger(__name__)

STATIC = Path(__file__).with_name("static")
SAMPLES = Path(__file__).parents[1] / "runner" / "samples"
DEV_USER = "developer@localhost"


# -- models (the OpenAPI contract) ---------------------------------------------------------------


class RunRequest(BaseModel):
    manifest: str = Field(description="the SparkJob manifest (YAML)", min_length=1)
    environment: str = Field(default="local", description="local, test, staging or prod")
    team: str | None = Field(default=None, description="defaults to the manifest's metadata.team")
    sandbox: bool = Field(default=False, description="writes only under the job's output; sampled sources")
    options: dict[str, str] = Field(default={}, description="raw Submit options (ttl_seconds, driver, param.<name>)")


class RunResponse(BaseModel):
    job_id: str
    namespace: str
    state: str
    backend: str


class StateChange(BaseModel):
    state: str
    at: str
    message: str = ""


class JobStatus(BaseModel):
    job_id: str
    state: str
    team: str = ""
    environment: str = ""
    user: str = ""
    job_name: str = ""
    namespace: str = ""
    backend: str = ""
    spark_ui_url: str = ""
    error: str = ""
    output_path: str = ""
    created_at: str = ""
    updated_at: str = ""
    attempts: int = 0
    history: list[StateChange] = []
    logs: str | None = None


class Results(BaseModel):
    job_id: str
    count: int
    columns: list[dict[str, Any]]
    preview: list[dict[str, Any]]
    output_path: str = ""


class ProblemOut(BaseModel):
    path: str
    message: str
    line: int | None = None


class Validation(BaseModel):
    valid: bool
    problems: list[ProblemOut] = []
    job_name: str | None = None
    team: str | None = None


class Sample(BaseModel):
    name: str
    title: str
    manifest: str


class ErrorOut(BaseModel):
    error: str
    problems: list[ProblemOut] = []


class CancelResponse(BaseModel):
    job_id: str
    state: str


# -- the app ---------------------------------------------------------------------------------------


def _status(resp: Any, logs: bool = False) -> JobStatus:
    data = MessageToDict(resp, preserving_proto_field_name=True, always_print_fields_with_no_presence=True)
    data.pop("result_preview", None)
    data.pop("result_count", None)
    data.pop("result_schema", None)
    if not logs:
        data.pop("logs", None)
    return JobStatus.model_validate(data)


def _problems(problems: list[Problem]) -> list[ProblemOut]:
    return [ProblemOut(path=p.path, message=p.message, line=p.line) for p in problems]


def _samples() -> list[Sample]:
    out = []
    for f in sorted(SAMPLES.glob("*.yaml")):
        text = f.read_text()
        first = next((ln.lstrip("# ").strip() for ln in text.splitlines() if ln.startswith("#")), f.stem)
        out.append(Sample(name=f.stem, title=first, manifest=text))
    return out


@dataclass(frozen=True)
class Caller:
    """Who is calling, and the credentials forwarded to the runner (which checks them again)."""

    name: str
    metadata: tuple[tuple[str, str], ...] = ()


async def current_user(
    request: Request,
    authorization: Annotated[str | None, Header(description="Bearer <token> (when auth is on)")] = None,
    x_user_email: Annotated[str | None, Header(description="who you are, when auth is off (dev)")] = None,
) -> Caller:
    guard: Guard = request.app.state.guard
    x_user_email = header_text(x_user_email, "X-User-Email")
    if not guard.enabled:
        return Caller((x_user_email or DEV_USER).strip()[:255] or DEV_USER)
    if not authorization:
        raise Unauthenticated("the Playground needs a bearer token: Authorization: Bearer <your access token>")
    who = await guard.identify([("authorization", authorization)], None, "", method="playground")
    return Caller(who.subject, (("authorization", authorization),))


User = Annotated[Caller, Depends(current_user)]


class BodyTooLarge(HTTPException):
    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body is larger than the limit of {limit} bytes (playground.max_body_bytes)")


class BodyLimit:
    """Requests whose body is larger than ``limit`` bytes get 413 before it is read whole: at once
    when they say so in Content-Length, or as soon as more than that has arrived."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.limit):
            too_large = declared.isdigit()
            error = BodyTooLarge(self.limit).detail if too_large else "Content-Length is not a number"
            response = JSONResponse({"error": error, "problems": []}, status_code=413 if too_large else 400)
            await response(scope, receive, send)
            return
        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise BodyTooLarge(self.limit)  # (FastAPI passes HTTPExceptions on as they are)
            return message

        await self.app(scope, limited, send)


def header_text(value: str | None, name: str) -> str | None:
    """A header's value as text: its bytes must be UTF-8 without control characters."""
    if value is None:
        return None
    try:
        text = value.encode("latin-1").decode("utf-8")  # (the server decoded the bytes as Latin-1)
    except (UnicodeEncodeError, UnicodeDecodeError):
        raise BadRequest(f"header {name} is not valid UTF-8 text") from None
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in text):
        raise BadRequest(f"header {name} has control characters")
    return text


def create_app(settings: Settings, runner_target: str, *, guard: Guard | None = None) -> FastAPI:
    client = RunnerClient(runner_target)
    # A guard given by the caller (the platform's gateway's) is started and stopped by its owner.
    owned = guard is None
    the_guard = build_guard(settings) if guard is None else guard
    environments = sorted(settings.environments)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if owned:
            await the_guard.__aenter__()
        try:
            yield
        finally:
            await client.close()
            if owned:
                await the_guard.__aexit__(None, None, None)

    # FastAPI's /docs and /redoc load their scripts from a CDN; these serve them from the package,
    # so the API docs work on a network without internet access.
    app = FastAPIOffline(
        static_url="/docs/assets",
        title="sparkgate DCP Playground",
        version="1",
        description="Run SparkJob manifests through the Spark Runner: submit, watch, cancel, see results.",
        lifespan=lifespan,
        responses={
            400: {"model": ErrorOut, "description": "bad request or invalid manifest"},
            401: {"model": ErrorOut, "description": "no or bad credentials"},
            503: {"model": ErrorOut, "description": "the Spark Runner is unreachable"},
        },
    )
    app.state.runner = client
    app.state.guard = the_guard

    app.add_middleware(BodyLimit, limit=settings.playground.max_body_bytes)

    @app.exception_handler(SparkgateError)
    async def sparkgate_error(request: Request, exc: SparkgateError) -> JSONResponse:
        body: dict[str, Any] = {"error": exc.message, "problems": []}
        if isinstance(exc, ManifestError):
            body["problems"] = [p.model_dump() for p in _problems(exc.problems)]
        headers = {}
        wait = getattr(exc, "retry_after_seconds", None)
        if wait:
            headers["Retry-After"] = str(max(1, math.ceil(wait)))
        return JSONResponse(body, status_code=exc.http_status, headers=headers)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        # Not found, method not allowed, a body that could not be read: the same JSON as the rest.
        return JSONResponse({"error": str(exc.detail), "problems": []}, status_code=exc.status_code)

    @app.exception_handler(RequestValidationError)
    async def bad_body(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [
            {"path": ".".join(str(x) for x in e["loc"] if x != "body") or "(body)", "message": e["msg"], "line": None}
            for e in exc.errors()
        ]
        return JSONResponse({"error": "invalid request body", "problems": problems}, status_code=400)

    async def own_job(job_id: str, user: Caller, *, logs: bool = False, results: bool = False) -> Any:
        resp = await client.check(job_id, logs=logs, results=results, metadata=user.metadata)
        if resp.user != user.name:
            raise PermissionDenied(f"job {job_id} belongs to another user")
        return resp

    api = "/api/v1/playground"

    async def run(req: RunRequest, user: User) -> RunResponse:
        check_size(req.manifest, settings.runner.max_manifest_bytes)
        manifest, problems = await asyncio.to_thread(check_manifest, req.manifest)
        if manifest is None:
            raise ManifestError(problems)
        options = dict(req.options)
        if req.sandbox:
            options["sandbox"] = "true"
        resp = await client.submit(
            user.metadata,
            manifest=req.manifest,
            team=req.team or manifest.metadata.team,
            environment=req.environment,
            user=user.name,
            job_name=manifest.metadata.name,
            options=options,
        )
        return RunResponse(job_id=resp.job_id, namespace=resp.namespace, state=resp.state, backend=resp.backend)

    app.post(f"{api}/run", response_model=RunResponse, summary="Run a manifest")(run)
    app.post(f"{api}/submit", response_model=RunResponse, summary="Submit a manifest (same as run)")(run)

    @app.get(
        f"{api}/status/{{job_id}}",
        response_model=JobStatus,
        summary="A job's state and history",
        responses={403: {"model": ErrorOut}, 404: {"model": ErrorOut}},
    )
    async def status(job_id: str, user: User, logs: bool = False) -> JobStatus:
        return _status(await own_job(job_id, user, logs=logs), logs=logs)

    @app.post(
        f"{api}/cancel/{{job_id}}",
        response_model=CancelResponse,
        summary="Stop a job (idempotent)",
        responses={403: {"model": ErrorOut}, 404: {"model": ErrorOut}},
    )
    async def cancel(job_id: str, user: User) -> CancelResponse:
        await own_job(job_id, user)
        resp = await client.cancel(job_id, user.metadata)
        return CancelResponse(job_id=job_id, state=resp.state)

    @app.get(
        f"{api}/results/{{job_id}}",
        response_model=Results,
        summary="A finished job's preview",
        responses={403: {"model": ErrorOut}, 404: {"model": ErrorOut}, 409: {"model": ErrorOut}},
    )
    async def results(job_id: str, user: User) -> Results:
        resp = await own_job(job_id, user, results=True)
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

    @app.get(f"{api}/jobs", response_model=list[JobStatus], summary="My jobs, newest first")
    async def jobs(user: User, limit: int = 50) -> list[JobStatus]:
        resp = await client.list(user.metadata, user=user.name, limit=max(1, min(limit, 500)))
        return [_status(j) for j in resp.jobs]

    @app.post(f"{api}/validate", response_model=Validation, summary="Check a manifest without running it")
    async def validate(req: RunRequest, user: User) -> Validation:
        check_size(req.manifest, settings.runner.max_manifest_bytes)
        manifest, problems = await asyncio.to_thread(check_manifest, req.manifest)
        if req.environment not in environments:
            problems.append(Problem("environment", f"must be one of {', '.join(environments)}"))
        elif manifest is not None:  # where it reads and writes, as Submit will check it
            roots = settings.environments[req.environment].data_roots
            try:
                problems += path_problems(manifest.with_parameters(), req.environment, roots)
            except SparkgateError as exc:  # a ${param} without a value
                problems.append(Problem("spec.parameters", exc.message))
        if manifest is None or problems:
            return Validation(valid=False, problems=_problems(problems))
        return Validation(valid=True, job_name=manifest.metadata.name, team=manifest.metadata.team)

    @app.get(
        f"{api}/jobs/{{job_id}}/events",
        summary="Live state and log lines (server-sent events)",
        responses={200: {"content": {"text/event-stream": {}}}, 403: {"model": ErrorOut}, 404: {"model": ErrorOut}},
    )
    async def events(job_id: str, user: User) -> StreamingResponse:
        await own_job(job_id, user)

        async def stream() -> AsyncIterator[str]:
            last: str | None = None
            seen: list[str] = []
            while True:
                resp = await client.check(job_id, logs=True, metadata=user.metadata)
                lines = [ln for ln in resp.logs.splitlines() if "[sparkgate-job" in ln]
                new = lines[len(seen) :] if lines[: len(seen)] == seen else lines
                for ln in new:
                    yield f"event: log\ndata: {json.dumps(ln)}\n\n"
                seen = lines
                key = f"{resp.state}/{len(resp.history)}/{resp.spark_ui_url}"
                if key != last:
                    yield f"event: state\ndata: {_status(resp).model_dump_json()}\n\n"
                    last = key
                if resp.state in TERMINAL:
                    yield "event: end\ndata: {}\n\n"
                    return
                await asyncio.sleep(0.5)

        return StreamingResponse(stream(), media_type="text/event-stream", headers={"cache-control": "no-cache"})

    @app.get(f"{api}/samples", response_model=list[Sample], summary="Sample manifests to start from")
    async def samples() -> list[Sample]:
        return _samples()

    @app.get(f"{api}/environments", response_model=list[str], summary="Environments jobs may run in")
    async def envs() -> list[str]:
        return environments

    @app.get(f"{api}/whoami", summary="Who the Playground thinks you are")
    async def whoami(user: User) -> dict[str, Any]:
        return {"user": user.name, "auth": settings.auth.mode}

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app
