"""Malformed requests are refused with INVALID_ARGUMENT, and the gateway keeps serving others."""

from __future__ import annotations

from collections.abc import Callable

import grpc
import pytest
from pyspark.errors import PySparkValueError
from pyspark.sql.connect.proto import base_pb2 as pb
from pyspark.sql.connect.proto import base_pb2_grpc
from pyspark.sql.connect.session import SparkSession

from .conftest import NS_T1, GatewayHarness
from .test_routing import assert_gateway_serves

pytestmark = pytest.mark.spark

SERVICE = "/spark.connect.SparkConnectService/"
GARBAGE = b"\xff\xff\xff"

Connect = Callable[..., SparkSession]


def _routing_metadata(gateway: GatewayHarness) -> tuple[tuple[str, str], ...]:
    h = gateway.settings.gateway.headers
    return ((h.team, NS_T1[0]), (h.environment, NS_T1[1]))


def test_garbage_bytes_are_invalid_argument(gateway: GatewayHarness, connect: Connect) -> None:
    md = _routing_metadata(gateway)
    with grpc.insecure_channel(gateway.target) as channel:
        execute = channel.unary_stream(SERVICE + "ExecutePlan")
        with pytest.raises(grpc.RpcError) as exc:
            list(execute(GARBAGE, metadata=md, timeout=30))
        assert exc.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert "not a valid protobuf message" in exc.value.details()

        config = channel.unary_unary(SERVICE + "Config")
        with pytest.raises(grpc.RpcError) as exc:
            config(GARBAGE, metadata=md, timeout=30)
        assert exc.value.code() is grpc.StatusCode.INVALID_ARGUMENT

        add_artifacts = channel.stream_unary(SERVICE + "AddArtifacts")
        with pytest.raises(grpc.RpcError) as exc:
            add_artifacts(iter([GARBAGE]), metadata=md, timeout=30)
        assert exc.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert_gateway_serves(gateway, connect)


def test_non_uuid_session_id_is_invalid_argument(gateway: GatewayHarness, connect: Connect) -> None:
    # pyspark itself refuses a non-UUID session_id in the connection string ...
    with pytest.raises(PySparkValueError, match="INVALID_SESSION_UUID_ID"):
        SparkSession.builder.remote(gateway.url(*NS_T1, session_id="not-a-uuid")).create()

    # ... so send one the way another client could: a raw request whose field 1 is "abc".
    with grpc.insecure_channel(gateway.target) as channel:
        stub = base_pb2_grpc.SparkConnectServiceStub(channel)
        request = pb.ConfigRequest(
            session_id="abc",
            client_type="raw",
            operation=pb.ConfigRequest.Operation(get=pb.ConfigRequest.Get(keys=["spark.sql.shuffle.partitions"])),
        )
        with pytest.raises(grpc.RpcError) as exc:
            stub.Config(request, metadata=_routing_metadata(gateway), timeout=30)
        assert exc.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert "'abc' is not a UUID" in exc.value.details()

        request.session_id = ""
        with pytest.raises(grpc.RpcError) as exc:
            stub.Config(request, metadata=_routing_metadata(gateway), timeout=30)
        assert exc.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert "no session_id" in exc.value.details()
    assert_gateway_serves(gateway, connect)
