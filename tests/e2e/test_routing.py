"""Routing a new session by team and environment, from wherever the client names them."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path

import grpc
import grpc.aio
import pyarrow as pa
import pytest
from pyspark.errors.exceptions.connect import SparkConnectGrpcException
from pyspark.sql.connect.proto import base_pb2 as pb
from pyspark.sql.connect.proto import base_pb2_grpc, relations_pb2
from pyspark.sql.connect.session import SparkSession

from sparkgate.connect.probe import run_sql

from .conftest import NS_API, NS_NOTEBOOK, NS_T1, GatewayHarness

pytestmark = pytest.mark.spark

TEAM_KEY = "spark.connect.grpc.header.x-doordash-team"
ENV_KEY = "spark.connect.grpc.header.x-doordash-environment"

Connect = Callable[..., SparkSession]


def test_routing_headers_as_url_params(gateway: GatewayHarness, connect: Connect) -> None:
    spark = connect(gateway.url(*NS_T1, **{"x-doordash-user": "alice"}))
    assert spark.sql("SELECT 'routed' AS s").first().s == "routed"

    route = gateway.route(spark.client._session_id)
    assert route is not None
    assert (route.team, route.environment, route.owner) == (*NS_T1, "alice")
    assert gateway.namespace_of(route.driver_id) == "sjns-t1-local"


def test_two_teams_land_on_different_drivers(gateway: GatewayHarness, connect: Connect) -> None:
    # One team names itself in builder options (Config RPC), the other in the URL (headers).
    api = connect(gateway.url(), {TEAM_KEY: NS_API[0], ENV_KEY: NS_API[1]})
    notebook = connect(gateway.url(*NS_NOTEBOOK))
    assert api.range(10).count() == 10
    assert notebook.range(20).count() == 20

    a, b = gateway.route(api.client._session_id), gateway.route(notebook.client._session_id)
    assert a is not None and b is not None
    assert (a.team, a.environment) == NS_API
    assert (b.team, b.environment) == NS_NOTEBOOK
    assert a.driver_id != b.driver_id
    assert gateway.namespace_of(a.driver_id) == "sjns-feature-engineering-prod"
    assert gateway.namespace_of(b.driver_id) == "sjns-data-science-staging"


def _grpc_error(exc: pytest.ExceptionInfo[SparkConnectGrpcException]) -> tuple[grpc.StatusCode, str]:
    return exc.value.getGrpcStatusCode(), exc.value.getMessage()


def test_missing_routing_headers_are_named(gateway: GatewayHarness, connect: Connect) -> None:
    no_env = connect(gateway.url(team="t1"))
    with pytest.raises(SparkConnectGrpcException) as exc:
        no_env.sql("SELECT 1").collect()
    code, message = _grpc_error(exc)
    assert code is grpc.StatusCode.INVALID_ARGUMENT
    assert "x-doordash-environment" in message
    assert "x-doordash-team" not in message.split("Name them")[0]

    nothing = connect(gateway.url())
    with pytest.raises(SparkConnectGrpcException) as exc:
        nothing.range(3).collect()
    code, message = _grpc_error(exc)
    assert code is grpc.StatusCode.INVALID_ARGUMENT
    assert "team (header 'x-doordash-team')" in message
    assert "environment (header 'x-doordash-environment')" in message

    assert gateway.route(no_env.client._session_id) is None
    assert gateway.route(nothing.client._session_id) is None
    assert_gateway_serves(gateway, connect)


def test_unknown_environment_lists_known_ones(gateway: GatewayHarness, connect: Connect) -> None:
    spark = connect(gateway.url("t1", "moon"))
    with pytest.raises(SparkConnectGrpcException) as exc:
        spark.sql("SELECT 1").collect()
    code, message = _grpc_error(exc)
    assert code is grpc.StatusCode.INVALID_ARGUMENT
    assert "'moon'" in message
    assert "local, prod, staging, test" in message
    assert_gateway_serves(gateway, connect)


def test_jvm_style_config_rpcs_route_then_replay(gateway: GatewayHarness) -> None:
    """The JVM client sends one Config(Set) per builder option: team, a plain option and the
    environment arrive in three RPCs. The gateway answers the first two itself and, once the
    session is routable, replays them to the driver before forwarding the third."""
    session_id = str(uuid.uuid4())
    user = pb.UserContext(user_id="jvm-user", user_name="jvm-user")
    client_type = "_SPARK_CONNECT_SCALA spark/4.1.4"

    def config_set(key: str, value: str) -> pb.ConfigRequest:
        return pb.ConfigRequest(
            session_id=session_id,
            user_context=user,
            client_type=client_type,
            operation=pb.ConfigRequest.Operation(set=pb.ConfigRequest.Set(pairs=[pb.KeyValue(key=key, value=value)])),
        )

    with grpc.insecure_channel(gateway.target) as channel:
        stub = base_pb2_grpc.SparkConnectServiceStub(channel)

        first = stub.Config(config_set(TEAM_KEY, NS_T1[0]), timeout=30)
        assert first.session_id == session_id
        assert not first.server_side_session_id  # answered by the gateway, not a driver
        second = stub.Config(config_set("spark.sql.session.timeZone", "Asia/Tokyo"), timeout=30)
        assert not second.server_side_session_id
        assert gateway.route(session_id) is None

        third = stub.Config(config_set(ENV_KEY, NS_T1[1]), timeout=120)
        assert third.server_side_session_id  # a driver answered
        route = gateway.route(session_id)
        assert route is not None
        assert (route.user_id, route.team, route.environment) == ("jvm-user", *NS_T1)
        assert [(c.method, c.outcome) for c in gateway.calls_for(session_id)] == [
            ("Config", "answer"),
            ("Config", "answer"),
            ("Config", route.driver_id),
        ]

        sql = pb.Plan(root=relations_pb2.Relation(sql=relations_pb2.SQL(query="SELECT 42 AS answer")))
        execute = pb.ExecutePlanRequest(
            session_id=session_id,
            user_context=user,
            client_type=client_type,
            operation_id=str(uuid.uuid4()),
            plan=sql,
        )
        responses = list(stub.ExecutePlan(execute, timeout=60))
        batches = [r.arrow_batch.data for r in responses if r.HasField("arrow_batch")]
        assert batches
        table = pa.concat_tables(pa.ipc.open_stream(b).read_all() for b in batches)
        assert table.column("answer").to_pylist() == [42]
        assert {r.server_side_session_id for r in responses} == {third.server_side_session_id}

        get = pb.ConfigRequest(
            session_id=session_id,
            user_context=user,
            client_type=client_type,
            operation=pb.ConfigRequest.Operation(
                get=pb.ConfigRequest.Get(keys=[TEAM_KEY, ENV_KEY, "spark.sql.session.timeZone"])
            ),
        )
        values = {kv.key: kv.value for kv in stub.Config(get, timeout=30).pairs}
        assert values == {TEAM_KEY: "t1", ENV_KEY: "local", "spark.sql.session.timeZone": "Asia/Tokyo"}

        release = pb.ReleaseSessionRequest(session_id=session_id, user_context=user, client_type=client_type)
        assert stub.ReleaseSession(release, timeout=30).session_id == session_id
    assert gateway.route(session_id) is None


def assert_gateway_serves(gateway: GatewayHarness, connect: Connect) -> None:
    """After a refused request, a well-formed session still works."""
    spark = connect(gateway.url(*NS_T1))
    assert spark.sql("SELECT 7 * 6 AS v").first().v == 42


def test_a_token_read_on_one_team_s_driver_opens_no_other(gateway: GatewayHarness, connect: Connect) -> None:
    """A session may run any JVM code on its driver and read that driver's token: the driver of
    another team refuses it. (Local drivers run as the gateway's OS user, so a session can still
    read files of that user; the README says what that means for isolation on one machine.)"""
    api = connect(gateway.url(*NS_API))
    notebook = connect(gateway.url(*NS_NOTEBOOK))
    assert notebook.range(1).count() == 1
    row = api.sql(
        "SELECT java_method('java.lang.System', 'getenv', 'SPARK_CONNECT_AUTHENTICATE_TOKEN') AS env, "
        "java_method('java.lang.System', 'getProperty', 'spark.connect.authenticate.token') AS prop"
    ).first()
    assert row is not None and row.env in (None, "null")  # not in the driver's environment
    stolen = row.prop  # its own token, which the driver has in its configuration

    a, b = gateway.route(api.client._session_id), gateway.route(notebook.client._session_id)
    assert a is not None and b is not None and a.driver_id != b.driver_id
    drivers = {d.id: d for d in gateway._call(lambda: list(gateway.clusters.drivers()))}  # type: ignore[union-attr]
    own, other = drivers[a.driver_id], drivers[b.driver_id]
    assert stolen == own.token and own.token != other.token
    # Nor in the driver's files: its properties file no longer holds it once the driver is up.
    assert "authenticate.token" not in (Path(own.log_path or "").parent / "spark.properties").read_text()

    async def call(address: str, token: str | None) -> grpc.StatusCode:
        metadata = (("authorization", f"Bearer {token}"),) if token else ()
        async with grpc.aio.insecure_channel(address) as channel:
            try:
                await run_sql(channel, "SELECT 1", timeout=30, metadata=metadata)
            except grpc.aio.AioRpcError as exc:
                return exc.code()
        return grpc.StatusCode.OK

    assert gateway.run(call(other.address, stolen)) is grpc.StatusCode.UNAUTHENTICATED
    assert gateway.run(call(other.address, None)) is grpc.StatusCode.UNAUTHENTICATED
    assert gateway.run(call(other.address, other.token)) is grpc.StatusCode.OK  # (its own token does work)
