"""Talk to a Spark Connect driver directly, without pyspark: readiness, warm-up and health probes.

Requests are hand-encoded with :mod:`sparkgate.connect.wire` so the gateway does not need
the pyspark package (and its 450 MB of jars) to check its drivers.
"""

from __future__ import annotations

import uuid

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


async def ping(channel: grpc.aio.Channel, timeout: float, metadata: Metadata = ()) -> None:
    """The cheapest call a Spark Connect server answers: ReleaseSession of an unknown session.

    The server looks the session up with ``getIsolatedSessionIfPresent`` and answers at once; an
    unknown id creates no session and leaves no tombstone (observed on 4.1.4), so probing every
    second costs the driver nothing. Raises ``grpc.aio.AioRpcError`` if the driver does not answer.
    """
    release = channel.unary_unary(SERVICE_PATH + "ReleaseSession")
    await release(release_session_request(str(uuid.uuid4())), timeout=timeout, metadata=metadata)


async def release_session(address: str, session_id: str, user_id: str, timeout: float, metadata: Metadata = ()) -> None:
    """Release a session on the driver at ``address`` (its running operations are interrupted).
    Raises ``grpc.aio.AioRpcError`` if the driver does not answer."""
    async with grpc.aio.insecure_channel(address) as channel:
        release = channel.unary_unary(SERVICE_PATH + "ReleaseSession")
        await release(release_session_request(session_id, user_id), timeout=timeout, metadata=metadata)
