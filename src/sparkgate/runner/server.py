"""The gRPC face of the runner: ``sparkrunner.SparkRunnerService`` on :50051 (``proto/spark_runner.proto``).

Errors become gRPC statuses with the message a user can act on (an invalid manifest is
INVALID_ARGUMENT naming the path of the problem; an unknown job NOT_FOUND).

Who may do what (the same :class:`~sparkgate.security.guard.Guard` and settings as the gateway):
with ``auth.mode`` on, every call needs a bearer token (``authorization: Bearer …``, as the
Playground forwards its user's and ``sparkgate submit`` sends ``SPARKGATE_TOKEN``). The caller acts
as the token's subject: a request naming another ``user`` is refused, a Submit needs the team and
environment authorization the gateway asks for, and a job is seen, listed and cancelled only by its
owner or members of ``auth.admin_groups``. The platform's own services (group
``sparkgate:platform``) act for the user they name. With ``auth.mode: none`` the request's
``user`` is believed, as on the gateway.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import AsyncGenerator, Callable
from typing import Any

import grpc
import grpc.aio

from sparkgate.connect.status import grpc_error
from sparkgate.errors import PermissionDenied, SparkgateError, Unauthenticated
from sparkgate.runner.jobs import Job
from sparkgate.runner.proto import spark_runner_pb2 as pb
from sparkgate.runner.proto import spark_runner_pb2_grpc as pb_grpc
from sparkgate.runner.service import JobUpdate, JobView, Runner
from sparkgate.security.authz import PLATFORM_GROUP
from sparkgate.security.guard import Guard
from sparkgate.security.identity import Identity, bearer_token

log = logging.getLogger(__name__)


def _ts(value: dt.datetime | None) -> str:
    return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z") if value else ""


def check_response(view: JobView) -> pb.CheckResponse:
    j = view.job
    resp = pb.CheckResponse(
        job_id=j.id,
        state=j.state,
        spark_ui_url=j.spark_ui_url,
        logs=view.logs,
        error=j.error,
        output_path=j.output_path,
        created_at=_ts(j.created_at),
        updated_at=_ts(j.updated_at),
        attempts=j.attempts,
        team=j.team,
        environment=j.environment,
        user=j.user,
        job_name=j.name,
        namespace=j.namespace,
        backend=j.backend,
    )
    resp.history.extend(pb.StateChange(state=e.state, at=_ts(e.at), message=e.message) for e in view.history)
    if view.result is not None:
        resp.result_preview = json.dumps(view.result.get("preview", []))
        resp.result_count = int(view.result.get("count", 0))
        resp.result_schema = json.dumps(view.result.get("schema", {}))
        resp.output_path = str(view.result.get("output_path") or j.output_path)
    return resp


class RunnerServicer(pb_grpc.SparkRunnerServiceServicer):  # type: ignore[misc]
    def __init__(self, runner: Runner, guard: Guard | None = None) -> None:
        self.runner = runner
        self.guard = guard

    async def _fail(self, context: grpc.aio.ServicerContext[Any, Any], exc: SparkgateError) -> None:
        code, message, trailers = grpc_error(exc)  # (a RetryInfo, when the error says when to retry)
        await context.abort(code, message, trailers)

    async def _caller(
        self, context: grpc.aio.ServicerContext[Any, Any], claimed: str, method: str
    ) -> tuple[Identity, str]:
        """Who is calling, and the user the call acts for."""
        guard = self.guard
        if guard is None or not guard.enabled:
            return Identity(claimed), claimed
        metadata = [(m.key, m.value) for m in context.invocation_metadata() or ()]
        try:
            who = await guard.identify(metadata, None, claimed, method=f"runner.{method}")
        except Unauthenticated:
            if bearer_token(metadata) is not None:
                raise
            # Counted and audited by the guard; its message tells gateway users about sc:// URLs.
            raise Unauthenticated(
                "the Spark Runner requires a token: send 'authorization: Bearer <your access token>' "
                "(sparkgate submit reads SPARKGATE_TOKEN or ~/.config/sparkgate/token)"
            ) from None
        if PLATFORM_GROUP in who.groups:
            return who, claimed
        if claimed and claimed != who.subject:
            raise PermissionDenied(f"you are {who.subject}; you cannot act as {claimed!r}")
        return who, who.subject

    def _sees_all(self, who: Identity) -> bool:
        if not who.verified or PLATFORM_GROUP in who.groups:
            return True
        return self.guard is not None and bool(who.groups.intersection(self.guard.settings.admin_groups))

    def _own(self, who: Identity, job: Job) -> None:
        if not self._sees_all(who) and job.user != who.subject:
            raise PermissionDenied(f"job {job.id} belongs to another user")

    def _authorize(self, who: Identity) -> Callable[[str, str], None] | None:
        guard = self.guard
        if guard is None or not guard.enabled or PLATFORM_GROUP in who.groups:
            return None
        return lambda team, environment: guard.authz.check(who, team, environment)

    async def Submit(self, request: pb.SubmitRequest, context: grpc.aio.ServicerContext[Any, Any]) -> pb.SubmitResponse:
        try:
            who, user = await self._caller(context, request.user, "Submit")
            job = await self.runner.submit(
                request.manifest,
                team=request.team,
                environment=request.environment,
                user=user,
                job_name=request.job_name,
                options=dict(request.options),
                authorize=self._authorize(who),
            )
        except SparkgateError as exc:
            await self._fail(context, exc)
            raise AssertionError("unreachable") from None
        return pb.SubmitResponse(job_id=job.id, namespace=job.namespace, state=job.state, backend=job.backend)

    async def Check(self, request: pb.CheckRequest, context: grpc.aio.ServicerContext[Any, Any]) -> pb.CheckResponse:
        try:
            who, _ = await self._caller(context, "", "Check")
            view = await self.runner.check(
                request.job_id, include_logs=request.include_logs, include_results=request.include_results
            )
            self._own(who, view.job)
        except SparkgateError as exc:
            await self._fail(context, exc)
            raise AssertionError("unreachable") from None
        return check_response(view)

    async def Cancel(self, request: pb.CancelRequest, context: grpc.aio.ServicerContext[Any, Any]) -> pb.CancelResponse:
        try:
            who, _ = await self._caller(context, "", "Cancel")
            if not self._sees_all(who):
                self._own(who, (await self.runner.check(request.job_id)).job)
            job = await self.runner.cancel(request.job_id)
        except SparkgateError as exc:
            await self._fail(context, exc)
            raise AssertionError("unreachable") from None
        return pb.CancelResponse(success=True, state=job.state)

    async def List(self, request: pb.ListRequest, context: grpc.aio.ServicerContext[Any, Any]) -> pb.ListResponse:
        try:
            who, user = await self._caller(context, request.user, "List")
            if not request.user and self._sees_all(who):
                user = ""  # everyone's jobs: no auth, an admin or a platform service asking for all
            jobs = await self.runner.list(team=request.team, user=user, state=request.state, limit=request.limit or 50)
        except SparkgateError as exc:
            await self._fail(context, exc)
            raise AssertionError("unreachable") from None
        return pb.ListResponse(jobs=[check_response(JobView(j)) for j in jobs])

    async def Watch(self, request: pb.WatchRequest, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        # Written with context.write() rather than as a generator: when the client goes away the
        # handler is cancelled where it waits, and the watch is closed at once (not when collected).
        updates: AsyncGenerator[JobUpdate, None] | None = None
        try:
            who, _ = await self._caller(context, "", "Watch")
            self._own(who, (await self.runner.check(request.job_id)).job)
            user = who.subject if who.verified else ""
            updates = self.runner.watch(request.job_id, user=user, log_filter=request.log_filter)
            async for update in updates:
                event = pb.JobEvent(log_lines=update.log_lines)
                if update.view is not None:
                    event.state.CopyFrom(check_response(update.view))
                await context.write(event)
        except SparkgateError as exc:
            await self._fail(context, exc)
        finally:
            if updates is not None:
                await updates.aclose()


class RunnerServer:
    """``async with RunnerServer(runner, host, port, guard=guard) as s: s.port``."""

    def __init__(self, runner: Runner, host: str, port: int, *, guard: Guard | None = None) -> None:
        self.runner = runner
        self.guard = guard
        self.host = host
        self.port = port
        self._server: grpc.aio.Server | None = None

    async def start(self) -> None:
        server = grpc.aio.server(options=[("grpc.so_reuseport", 0), ("grpc.max_receive_message_length", 16 << 20)])
        pb_grpc.add_SparkRunnerServiceServicer_to_server(RunnerServicer(self.runner, self.guard), server)  # type: ignore[no-untyped-call]
        port = server.add_insecure_port(f"{self.host}:{self.port}")
        if port == 0:
            raise OSError(f"the runner could not listen on {self.host}:{self.port} (port in use?)")
        await server.start()
        self._server, self.port = server, port
        log.info("Spark Runner listening on %s:%d", self.host, port)

    async def stop(self, grace: float = 5.0) -> None:
        if self._server is not None:
            await self._server.stop(grace)
            self._server = None

    async def __aenter__(self) -> RunnerServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
