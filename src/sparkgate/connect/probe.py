"""Talk to a Spark Connect driver directly, without pyspark: readiness, warm-up and health probes.

Requests are hand-encoded with :mod:`sparkgate.connect.wire` so the gateway does not need
the pyspark package (and its 450 MB of jars) to check its drivers.
"""

from __future__ import annotations

import uuid
from typing import Protocol, runtime_checkable

import grpc
import grpc.aio

from sparkgate.connect.service import SERVICE_PATH
from sparkgate.connect.wire import encode_string

PROBE_USER = "sparkgate-probe"


def _ids(session_id: str, user_id: str = PROBE_USER) -> bytes:
    return encode_string(1, session_id) + encode_string(2, encode_string(1, user_id))


def sql_execute_request(session_id: str, query: str) -> bytes:
    """``ExecutePlanRequest{plan.root.sql.query}`` (Plan.root=1, Relation.sql=10, SQL.query=1)."""
    plan = encode_string(1, encode_string(10, encode_string(1, query)))
    return (
        _ids(session_id) + encode_string(3, plan) + encode_string(4, "sparkgate") + encode_string(6, str(uuid.uuid4()))
    )


def release_session_request(session_id: str, user_id: str = PROBE_USER) -> bytes:
    return _ids(session_id, user_id) + encode_string(3, "sparkgate")


Metadata = tuple[tuple[str, str], ...]


async def run_sql(channel: grpc.aio.Channel, query: str, timeout: float = 120.0, metadata: Metadata = ()) -> int:
    """Run ``query`` in a throw-away session on the driver; returns the number of responses.

    Raises ``grpc.aio.AioRpcError`` when the driver does not answer or the query fails.
    """
    session_id = str(uuid.uuid4())
    execute = channel.unary_stream(SERVICE_PATH + "ExecutePlan")
    release = channel.unary_unary(SERVICE_PATH + "ReleaseSession")
    n = 0
    try:
        async for _ in execute(sql_execute_request(session_id, query), timeout=timeout, metadata=metadata):
            n += 1
    finally:
        try:
            await release(release_session_request(session_id), timeout=10, metadata=metadata)
        except grpc.aio.AioRpcError:
            pass
    return n


class DriverCallFailed(Exception):
    """A call to a driver got no OK answer; the message says why (``CODE: details``, or no answer)."""


@runtime_checkable
class DriverCalls(Protocol):
    """Unary calls to drivers, on connections kept open between calls.

    The gateway serves them on the connections it relays clients' calls on (its driver pool), so a
    driver's health probes and session releases share those connections; without a gateway,
    :class:`ChannelCalls` keeps a gRPC channel per driver.
    """

    async def unary(self, address: str, method: str, request: bytes, metadata: Metadata, timeout: float) -> bytes:
        """Call ``method`` (a Spark Connect method name); the response message, or raises
        :class:`DriverCallFailed`."""
        ...

    async def forget(self, address: str) -> None:
        """The driver at ``address`` is gone: close what is kept open for it."""
        ...

    async def close(self) -> None: ...


class ChannelCalls:
    """:class:`DriverCalls` on one gRPC channel per driver address."""

    def __init__(self) -> None:
        self._channels: dict[str, grpc.aio.Channel] = {}

    async def unary(self, address: str, method: str, request: bytes, metadata: Metadata, timeout: float) -> bytes:
        channel = self._channels.get(address)
        if channel is None:
            channel = self._channels[address] = grpc.aio.insecure_channel(address)
        call = channel.unary_unary(SERVICE_PATH + method)
        try:
            response: bytes = await call(request, timeout=timeout, metadata=metadata)
        except grpc.aio.AioRpcError as exc:
            raise DriverCallFailed(f"{exc.code().name}: {exc.details()}") from None
        except TimeoutError:
            raise DriverCallFailed("no answer in time") from None
        return response

    async def forget(self, address: str) -> None:
        channel = self._channels.pop(address, None)
        if channel is not None:
            await channel.close()

    async def close(self) -> None:
        channels, self._channels = list(self._channels.values()), {}
        for channel in channels:
            await channel.close()


async def ping(calls: DriverCalls, address: str, timeout: float, metadata: Metadata = ()) -> None:
    """The cheapest call a Spark Connect server answers: ReleaseSession of an unknown session.

    The server looks the session up with ``getIsolatedSessionIfPresent`` and answers at once; an
    unknown id creates no session and leaves no tombstone (observed on 4.1.4), so probing every
    second costs the driver nothing. Raises :class:`DriverCallFailed` if the driver does not answer.
    """
    await calls.unary(address, "ReleaseSession", release_session_request(str(uuid.uuid4())), metadata, timeout)


async def release_session(
    calls: DriverCalls, address: str, session_id: str, user_id: str, *, timeout: float, metadata: Metadata = ()
) -> None:
    """Release a session on the driver at ``address`` (its running operations are interrupted).
    Raises :class:`DriverCallFailed` if the driver does not answer."""
    await calls.unary(address, "ReleaseSession", release_session_request(session_id, user_id), metadata, timeout)
