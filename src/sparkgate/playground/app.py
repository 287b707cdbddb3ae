"""The Playground's REST API (FastAPI) and the web UI it serves: the app factory.

``create_app(settings, runner_target)`` builds the app: the routes of :mod:`.api` under
``/api/v1/playground`` (jobs: ``run``/``submit``, ``status/{id}``, ``cancel/{id}``,
``results/{id}``, ``jobs``, ``validate``, ``jobs/{id}/events``; for the UI: ``samples``,
``environments``, ``whoami``), the UI at ``/`` and OpenAPI at ``/docs``. Everything about jobs goes
to the Spark Runner over gRPC; the Playground never starts Spark or calls the gateway.

Who is calling (:mod:`.deps`): with ``auth.mode`` on, the bearer token (OIDC or static, as the
gateway checks them); with auth off (development), the ``X-User-Email`` header. Users see and
touch only their own jobs (403 otherwise). Errors are JSON ``{"error": ..., "problems": [...]}``
with the status the error tree gives: 400 bad manifest (each problem with its path and line), 404
unknown job, 409 results before completion, 403 another user's job, 413 a body past
``playground.max_body_bytes``, 429 too many submits, 503 runner unreachable.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline
from starlette.exceptions import HTTPException as StarletteHTTPException

from sparkgate.config import Settings
from sparkgate.errors import SparkgateError
from sparkgate.playground.api import PREFIX, ROUTERS
from sparkgate.playground.limits import BodyLimit
from sparkgate.playground.models import ErrorOut, problems_out
from sparkgate.runner.client import RunnerClient
from sparkgate.runner.manifest import ManifestError
from sparkgate.security.guard import Guard, build_guard

STATIC = Path(__file__).with_name("static")


def create_app(settings: Settings, runner_target: str, *, guard: Guard | None = None) -> FastAPI:
    client = RunnerClient(runner_target)
    # A guard given by the caller (the platform's gateway's) is started and stopped by its owner.
    owned = guard is None
    the_guard = build_guard(settings) if guard is None else guard

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
    app.state.settings = settings
    app.add_middleware(BodyLimit, limit=settings.playground.max_body_bytes)
    app.add_exception_handler(SparkgateError, _sparkgate_error)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, _http_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _bad_body)  # type: ignore[arg-type]
    for router in ROUTERS:
        app.include_router(router, prefix=PREFIX)
    app.add_api_route("/", _index, include_in_schema=False)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


async def _sparkgate_error(request: Request, exc: SparkgateError) -> JSONResponse:
    body: dict[str, Any] = {"error": exc.message, "problems": []}
    if isinstance(exc, ManifestError):
        body["problems"] = [p.model_dump() for p in problems_out(exc.problems)]
    headers = {}
    wait = getattr(exc, "retry_after_seconds", None)
    if wait:
        headers["Retry-After"] = str(max(1, math.ceil(wait)))
    return JSONResponse(body, status_code=exc.http_status, headers=headers)


async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    # Not found, method not allowed, a body that could not be read: the same JSON as the rest.
    return JSONResponse({"error": str(exc.detail), "problems": []}, status_code=exc.status_code)


async def _bad_body(request: Request, exc: RequestValidationError) -> JSONResponse:
    problems = [
        {"path": ".".join(str(x) for x in e["loc"] if x != "body") or "(body)", "message": e["msg"], "line": None}
        for e in exc.errors()
    ]
    return JSONResponse({"error": "invalid request body", "problems": problems}, status_code=400)


async def _index() -> FileResponse:
    return FileResponse(STATIC / "index.html")
