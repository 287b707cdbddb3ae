"""What the Playground's routes depend on: who is calling, the Spark Runner, the settings."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Header, Request

from sparkgate.config import Settings
from sparkgate.errors import PermissionDenied, Unauthenticated
from sparkgate.playground.limits import header_text
from sparkgate.runner.client import RunnerClient
from sparkgate.security.guard import Guard

#: Who a caller is, with auth off and no ``X-User-Email``.
DEV_USER = "developer@localhost"


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


def runner_client(request: Request) -> RunnerClient:
    client: RunnerClient = request.app.state.runner
    return client


def settings(request: Request) -> Settings:
    value: Settings = request.app.state.settings
    return value


Runner = Annotated[RunnerClient, Depends(runner_client)]
CurrentSettings = Annotated[Settings, Depends(settings)]


async def own_job(runner: RunnerClient, job_id: str, user: Caller, *, logs: bool = False, results: bool = False) -> Any:
    """The job, if it is the caller's (403 otherwise)."""
    resp = await runner.check(job_id, logs=logs, results=results, metadata=user.metadata)
    if resp.user != user.name:
        raise PermissionDenied(f"job {job_id} belongs to another user")
    return resp
