"""The gRPC face of the runner: ``sparkrunner.SparkRunnerService`` on :50051 (the seed's proto).

Errors become gRPC statuses with the message a user can act on (an invalid manifest is
INVALID_ARGUMENT naming the path of the problem; an unknown job NOT_FOUND).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from typing import Any

import grpc
import grpc.aio

from sparkgate.errors import SparkgateError
from sparkgate.runner.proto import spark_runner_pb2 as pb
from sparkgate.runner.proto import spark_runner_pb2_grpc as pb_grpc
from sparkgate.runner.service import JobView, Runner

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
    def __init__(self, runner: Runner) -> None:
        self.runner = runner

    async def _fail(self, context: grpc.aio.ServicerContext[Any, Any], exc: SparkgateError) -> None:
        await context.abort(exc.grpc_status, exc.message)

    async def Submit(self, request: pb.SubmitRequest, context: grpc.aio.ServicerContext[Any, Any]) -> pb.SubmitResponse:
        try:
            job = await self.runner.submit(
                request.manifest,
                team=request.team,
                environment=request.environment,
                user=request.user,
                job_name=request.job_name,
                options=dict(request.options),
            )
        except SparkgateError as exc:
            await self._fail(context, exc)
            raise AssertionError("unreachable") from None
        return pb.SubmitResponse(job_id=job.id, namespace=job.namespace, state=job.state, backend=job.backend)

    async def Check(self, request: pb.CheckRequest, context: grpc.aio.ServicerContext[Any, Any]) -> pb.CheckResponse:
        try:
            view = await self.runner.check(
                request.job_id, include_logs=request.include_logs, include_results=request.include_results
            )
        except SparkgateError as exc:
            await self._fail(context, exc)
            raise AssertionError("unreachable") from None
        return check_response(view)

    async def Cancel(self, request: pb.CancelRequest, context: grpc.aio.ServicerContext[Any, Any]) -> pb.CancelResponse:
        try:
            job = await self.runner.cancel(request.job_id)
        except SparkgateError as exc:
            await self._fail(context, exc)
            raise AssertionError("unreachable") from None
        return pb.CancelResponse(success=True, state=job.state)

    async def List(self, request: pb.ListRequest, context: grpc.aio.ServicerContext[Any, Any]) -> pb.ListResponse:
        jobs = await self.runner.list(
            team=request.team, user=request.user, state=request.state, limit=request.limit or 50
        )
        return pb.ListResponse(jobs=[check_response(JobView(j)) for j in jobs])


class RunnerServer:
    """``async with RunnerServer(runner, host, port) as s: s.port``."""

    def __init__(self, runner: Runner, host: str, port: int) -> None:
        self.runner = runner
        self.host = host
        self.port = port
        self._server: grpc.aio.Server | None = None

    async def start(self) -> None:
        server = grpc.aio.server(options=[("grpc.so_reuseport", 0), ("grpc.max_receive_message_length", 16 << 20)])
        pb_grpc.add_SparkRunnerServiceServicer_to_server(RunnerServicer(self.runner), server)  # type: ignore[no-untyped-call]
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
