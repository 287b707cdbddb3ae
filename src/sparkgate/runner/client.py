"""The Spark Runner's client, for the Playground and the ``sparkgate submit`` family: gRPC, with
errors turned into the platform's error tree."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any

import grpc
import grpc.aio

from sparkgate.connect.status import retry_after
from sparkgate.errors import (
    BadRequest,
    Conflict,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    SparkgateError,
    Unavailable,
)
from sparkgate.runner.proto import spark_runner_pb2 as pb
from sparkgate.runner.proto import spark_runner_pb2_grpc as pb_grpc

_ERRORS: dict[grpc.StatusCode, type[SparkgateError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: BadRequest,
    grpc.StatusCode.NOT_FOUND: NotFound,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDenied,
    grpc.StatusCode.FAILED_PRECONDITION: Conflict,
}


Metadata = tuple[tuple[str, str], ...]


class RunnerClient:
    """``metadata``: sent with every call that brings none of its own (a CLI user's token)."""

    def __init__(self, target: str, metadata: Metadata = ()) -> None:
        self.target = target
        self.metadata = metadata
        self._channel: grpc.aio.Channel | None = None
        self._stub: Any = None

    def _get_stub(self) -> Any:
        if self._stub is None:
            self._channel = grpc.aio.insecure_channel(self.target)
            self._stub = pb_grpc.SparkRunnerServiceStub(self._channel)  # type: ignore[no-untyped-call]
        return self._stub

    async def call(self, method: str, request: Any, metadata: Metadata = (), timeout: float = 30) -> Any:
        """``metadata``: the caller's ``authorization`` header, forwarded (the runner checks it too)."""
        try:
            stub = getattr(self._get_stub(), method)
            return await stub(request, metadata=metadata or self.metadata, timeout=timeout)
        except grpc.aio.AioRpcError as err:
            raise self._error(err) from err

    async def watch(self, job_id: str, *, log_filter: str = "", metadata: Metadata = ()) -> AsyncGenerator[Any, None]:
        """The job's ``JobEvent``s until it ends (its state first)."""
        request = pb.WatchRequest(job_id=job_id, log_filter=log_filter)
        call = self._get_stub().Watch(request, metadata=metadata or self.metadata)
        try:
            async for event in call:
                yield event
        except grpc.aio.AioRpcError as err:
            raise self._error(err) from err
        finally:
            call.cancel()  # (a no-op once the stream ended; stops it when the caller stopped early)

    def _error(self, err: grpc.aio.AioRpcError) -> SparkgateError:
        code = err.code()
        if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
            return Unavailable(f"the Spark Runner at {self.target} is not reachable ({code.name}); try again")
        if code is grpc.StatusCode.RESOURCE_EXHAUSTED:
            wait = retry_after(err.trailing_metadata())
            return ResourceExhausted(err.details() or code.name, retry_after_seconds=wait)
        return _ERRORS.get(code, SparkgateError)(err.details() or code.name)

    async def submit(self, metadata: Metadata = (), **fields: Any) -> Any:
        return await self.call("Submit", pb.SubmitRequest(**fields), metadata)

    async def check(self, job_id: str, *, logs: bool = False, results: bool = False, metadata: Metadata = ()) -> Any:
        request = pb.CheckRequest(job_id=job_id, include_logs=logs, include_results=results)
        return await self.call("Check", request, metadata)

    async def cancel(self, job_id: str, metadata: Metadata = ()) -> Any:
        return await self.call("Cancel", pb.CancelRequest(job_id=job_id), metadata)

    async def list(self, metadata: Metadata = (), **fields: Any) -> Any:
        return await self.call("List", pb.ListRequest(**fields), metadata)

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close()
            self._channel = self._stub = None
