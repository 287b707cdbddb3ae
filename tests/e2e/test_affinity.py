"""Session affinity: every RPC of a session reaches the driver that holds it — across many calls,
for a cloned session, and across a gateway restart in the middle of a result stream."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable

import grpc
import grpc.aio
import pytest
from pyspark.sql.connect.session import SparkSession

from sparkgate.connect import wire

from .conftest import NS_T1, GatewayHarness

pytestmark = pytest.mark.spark

TEAM_KEY = "spark.connect.grpc.header.x-doordash-team"
ENV_KEY = "spark.connect.grpc.header.x-doordash-environment"

Connect = Callable[..., SparkSession]


def test_one_session_stays_on_one_driver_for_hundreds_of_rpcs(gateway: GatewayHarness, connect: Connect) -> None:
    spark = connect(gateway.url(*NS_T1))
    session_id = spark.client._session_id
    spark.sql("SELECT 1").collect()
    route = gateway.route(session_id)
    assert route is not None

    # Each round is several RPCs: ExecutePlan for the SQL command and for the collect, a
    # ReleaseExecute per response (sent from a background pool), AnalyzePlan, Config set and get.
    for i in range(100):
        df = spark.sql(f"SELECT {i} AS i, {i} * {i} AS sq")
        assert df.schema.names == ["i", "sq"]
        assert df.collect() == [(i, i * i)]
        spark.conf.set("spark.sql.shuffle.partitions", str(i % 4 + 1))
        assert spark.conf.get("spark.sql.shuffle.partitions") == str(i % 4 + 1)
        if len(gateway.calls_for(session_id)) >= 120:
            break
    calls = gateway.calls_for(session_id)
    assert len(calls) >= 100
    methods = Counter(c.method for c in calls)
    assert {"AnalyzePlan", "ExecutePlan", "ReleaseExecute", "Config"} <= set(methods), methods
    assert {c.outcome for c in calls} == {route.driver_id}
    still = gateway.route(session_id)
    assert still is not None and still.driver_id == route.driver_id


def test_clone_session_is_pinned_to_the_source_driver(gateway: GatewayHarness, connect: Connect) -> None:
    # The source names its team and environment only in builder options, so nothing in the
    # clone's requests says where it belongs: only the gateway's pin can route it.
    source = connect(gateway.url(), {TEAM_KEY: NS_T1[0], ENV_KEY: NS_T1[1]})
    source.range(0, 10).createOrReplaceTempView("ten")
    source_route = gateway.route(source.client._session_id)
    assert source_route is not None

    clone = source.cloneSession()
    # pyspark 4.1.4 builds the clone with object.__new__, skipping SparkSession.__init__, so
    # stop() would trip over the missing attribute and never release the clone.
    clone.release_session_on_close = True
    clone_id = clone.client._session_id
    try:
        assert clone_id != source.client._session_id
        assert [c.outcome for c in gateway.calls_for(source.client._session_id, "CloneSession")] == [
            source_route.driver_id
        ]
        clone_route = gateway.route(clone_id)
        assert clone_route is not None
        assert clone_route.driver_id == source_route.driver_id
        assert (clone_route.team, clone_route.environment) == NS_T1

        # The temp view was copied: the clone really runs on the source's driver.
        assert clone.sql("SELECT sum(id) AS s FROM ten").first().s == 45
        assert {c.outcome for c in gateway.calls_for(clone_id)} == {source_route.driver_id}
    finally:
        clone.stop()
    assert gateway.route(clone_id) is None
    assert gateway.route(source.client._session_id) is not None  # releasing the clone left the source


def test_gateway_restart_mid_stream_client_reattaches(gateway: GatewayHarness, connect: Connect) -> None:
    spark = connect(gateway.url(*NS_T1))
    session_id = spark.client._session_id
    assert spark.sql("SELECT 1 AS one").first().one == 1
    route = gateway.route(session_id)
    assert route is not None
    gateway.settle(session_id)

    # 24 partitions of 10,000 rows; each partition's first row sleeps 0.5 s, so on two driver
    # threads the Arrow batches stream out over ~6 s.
    rows, parts = 240_000, 24
    slow = spark.range(0, rows, 1, parts).selectExpr(
        "id",
        f"reflect('java.lang.Thread', 'sleep', CAST(IF(id % {rows // parts} = 0, 500, 0) AS BIGINT)) AS s",
    )
    started = time.time()
    outcome: dict[str, object] = {}

    def fetch() -> None:
        try:
            outcome["pdf"] = slow.toPandas()
        except Exception as exc:
            outcome["error"] = exc

    worker = threading.Thread(target=fetch, name="slow-stream")
    worker.start()
    try:
        # Restart only once the client has consumed a response of this stream (it acknowledges
        # each with ReleaseExecute), so a re-sent ExecutePlan could not recover it: only
        # ReattachExecute with last_response_id can.
        def consumed() -> bool:
            calls = [c for c in gateway.calls_for(session_id) if c.at >= started]
            execute = [c.at for c in calls if c.method == "ExecutePlan"]
            return bool(execute) and any(c.method == "ReleaseExecute" and c.at > execute[0] for c in calls)

        gateway.wait_for(consumed, timeout=60, what="the first streamed response")
        drivers_before = gateway._call(lambda: {d.id: d.pid for d in gateway.clusters.drivers()})
        restarted_at = time.time()
        gateway.restart_gateway()
        drivers_after = gateway._call(lambda: {d.id: d.pid for d in gateway.clusters.drivers()})
        # The new gateway adopted the running drivers: same ids, same processes, none started anew.
        assert drivers_after == drivers_before
        worker.join(120)
        assert not worker.is_alive(), "the result stream did not complete after the restart"
    finally:
        if worker.is_alive():
            spark.interruptAll()
            worker.join(30)

    assert "error" not in outcome, outcome.get("error")
    pdf = outcome["pdf"]
    assert len(pdf) == rows
    assert int(pdf["id"].sum()) == rows * (rows - 1) // 2
    assert pdf["id"].is_monotonic_increasing

    # The restarted gateway found the session's driver in the SQLite store and sent the
    # client's ReattachExecute there.
    after = [c for c in gateway.calls_for(session_id) if c.at > restarted_at]
    reattach = [c for c in after if c.method == "ReattachExecute"]
    assert reattach, Counter(c.method for c in after)
    assert {c.outcome for c in after} == {route.driver_id}
    assert gateway.route(session_id) is not None
    assert spark.sql("SELECT 'after restart' AS s").first().s == "after restart"


def test_a_killed_clients_session_frees_its_driver_slot(gateway: GatewayHarness) -> None:
    """A client that dies without ReleaseSession: its session is released once its connection
    has been closed for ``affinity.client_gone_seconds``, long before the idle TTL."""
    gw = gateway.gateway
    assert gw is not None and gateway.clusters is not None
    sid = str(uuid.uuid4())
    script = textwrap.dedent(f"""
        import time
        from pyspark.sql import SparkSession
        spark = SparkSession.builder.remote({gateway.url(*NS_T1, session_id=sid)!r}).getOrCreate()
        spark.range(3).collect()
        print("ready", flush=True)
        time.sleep(600)
    """)
    client = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env=gateway.client_env()
    )
    try:
        assert client.stdout is not None and client.stdout.readline().strip() == "ready"
    finally:
        client.kill()  # no ReleaseSession: the kernel closes its socket
        client.wait()
    route = gateway.route(sid)
    assert route is not None
    driver = gateway.clusters.get(route.driver_id)
    assert driver is not None
    before = driver.sessions
    book = gw.sessions
    kept = book.settings
    book.settings = kept.model_copy(update={"affinity": kept.affinity.model_copy(update={"client_gone_seconds": 0.5})})
    try:

        def released() -> bool:
            gateway.run(book.sweep())
            return gateway.route(sid) is None

        gateway.wait_for(released, 20, what="the session of the killed client to be released")
    finally:
        book.settings = kept
    assert driver.sessions == before - 1
    # The driver released it too: the session id is closed there.
    request = wire.encode_config_set_request(sid, route.user_id, [("spark.sql.ansi.enabled", "true")])

    async def config() -> str:
        async with grpc.aio.insecure_channel(driver.address) as ch:
            try:
                await ch.unary_unary("/spark.connect.SparkConnectService/Config")(
                    request, metadata=driver.auth_metadata, timeout=10
                )
            except grpc.aio.AioRpcError as exc:
                return str(exc.details())
        return "answered"

    assert "SESSION_CLOSED" in gateway.run(config())
