"""What users do with a session, through the gateway: SQL, DataFrames, uploads, downloads,
interrupting, stopping and starting again."""

from __future__ import annotations

import threading
from collections.abc import Callable

import numpy as np
import pandas as pd
import pyspark.sql
import pytest
from pyspark.errors.exceptions.connect import SparkConnectException
from pyspark.sql import Row
from pyspark.sql import functions as F
from pyspark.sql.connect.session import SparkSession

from .conftest import NS_T1, GatewayHarness, stop_all

pytestmark = pytest.mark.spark

Connect = Callable[..., SparkSession]


def test_sql_and_dataframe_operations(gateway: GatewayHarness, connect: Connect) -> None:
    spark = connect(gateway.url(*NS_T1))
    orders = spark.createDataFrame(
        [(1, "ann", 12.5), (2, "bob", 3.0), (3, "ann", 7.5), (4, "cy", 20.0), (5, "bob", 9.0)],
        "order_id long, customer string, amount double",
    )
    customers = spark.createDataFrame([("ann", "NYC"), ("bob", "SF"), ("cy", "NYC")], "customer string, city string")
    by_city = (
        orders.filter(F.col("amount") > 5)
        .join(customers, "customer")
        .groupBy("city")
        .agg(F.sum("amount").alias("total"), F.count("*").alias("n"))
        .orderBy("city")
    )
    assert by_city.collect() == [Row(city="NYC", total=40.0, n=3), Row(city="SF", total=9.0, n=1)]
    assert by_city.columns == ["city", "total", "n"]

    orders.createOrReplaceTempView("orders")
    ranked = spark.sql(
        "SELECT customer, amount, rank() OVER (PARTITION BY customer ORDER BY amount DESC) AS r "
        "FROM orders WHERE customer = :who ORDER BY r",
        args={"who": "ann"},
    )
    assert [tuple(r) for r in ranked.collect()] == [("ann", 12.5, 1), ("ann", 7.5, 2)]
    assert spark.sql("SELECT count(*) AS c FROM orders").first().c == 5


def test_create_dataframe_from_large_pandas_uploads_artifacts(gateway: GatewayHarness, connect: Connect) -> None:
    # pyspark uploads a local relation bigger than spark.sql.session.localRelationCacheThreshold
    # (64 MiB by default) as cache/<sha256> artifacts (ArtifactStatus + a chunked AddArtifacts
    # client stream) and sends only the hashes in the plan. The threshold is lowered to 1 MiB so
    # a ~10 MB frame (60 chunks of 10,000 rows) takes that path: the driver needs ~10 s per
    # million rows to assemble a chunked relation on two cores.
    spark = connect(gateway.url(*NS_T1), {"spark.sql.session.localRelationCacheThreshold": "1048576"})
    n = 600_000
    pdf = pd.DataFrame({"id": np.arange(n, dtype=np.int64), "v": (np.arange(n) % 1000) * 0.5})

    df = spark.createDataFrame(pdf)
    totals = df.agg(F.count("*").alias("n"), F.sum("id").alias("ids"), F.sum("v").alias("vs")).first()
    assert (totals.n, totals.ids, totals.vs) == (n, int(pdf["id"].sum()), float(pdf["v"].sum()))
    assert df.filter(F.col("id") == 543_210).first().v == (543_210 % 1000) * 0.5

    session_id = spark.client._session_id
    route = gateway.route(session_id)
    assert route is not None
    uploads = gateway.calls_for(session_id, "AddArtifacts")
    assert uploads, "the frame was not uploaded as artifacts"
    assert gateway.calls_for(session_id, "ArtifactStatus")
    assert {c.outcome for c in gateway.calls_for(session_id)} == {route.driver_id}


def test_to_pandas_of_a_million_rows(gateway: GatewayHarness, connect: Connect) -> None:
    spark = connect(gateway.url(*NS_T1))
    n = 1_500_000
    pdf = spark.range(0, n, 1, 4).selectExpr("id", "id % 7 AS m", "CAST(id AS STRING) AS s").toPandas()
    assert len(pdf) == n
    assert int(pdf["id"].sum()) == n * (n - 1) // 2
    assert int(pdf["m"].sum()) == sum(i % 7 for i in range(7)) * (n // 7) + sum(range(n % 7))
    assert pdf["id"].is_monotonic_increasing
    assert pdf["s"].iloc[-1] == str(n - 1)


def test_interrupt_all_cancels_a_running_query(gateway: GatewayHarness, connect: Connect) -> None:
    spark = connect(gateway.url(*NS_T1))
    # Reach the driver first: an Interrupt racing ahead of the session's first RPC is answered by
    # the gateway (see test_interrupt_before_the_first_query_leaves_the_session_usable).
    assert spark.sql("SELECT 1 AS one").first().one == 1
    # A query that would run for hours: every row sleeps a second.
    endless = spark.range(0, 100_000, 1, 2).selectExpr(
        "reflect('java.lang.Thread', 'sleep', CAST(1000 AS BIGINT)) AS slept"
    )
    outcome: dict[str, object] = {}

    def run() -> None:
        try:
            outcome["rows"] = endless.collect()
        except Exception as exc:
            outcome["error"] = exc

    worker = threading.Thread(target=run, name="endless-query")
    worker.start()
    try:
        interrupted: list[str] = []

        def interrupt() -> bool:
            # Interrupt is its own RPC, sent while the ExecutePlan stream is open; keep trying
            # until the driver has registered the operation.
            interrupted.extend(spark.interruptAll())
            return bool(interrupted)

        gateway.wait_for(interrupt, timeout=60, what="interruptAll to find the running query")
        worker.join(60)
        assert not worker.is_alive(), "the query kept running after interruptAll()"
    finally:
        if worker.is_alive():
            spark.interruptAll()
            worker.join(30)

    error = outcome.get("error")
    assert isinstance(error, SparkConnectException), outcome
    assert "OPERATION_CANCELED" in str(error)
    assert spark.sql("SELECT 'still works' AS s").first().s == "still works"


def test_interrupt_before_the_first_query_leaves_the_session_usable(gateway: GatewayHarness, connect: Connect) -> None:
    # A notebook's "interrupt" button pressed before anything ran. Against a Spark Connect server
    # this creates the session (Interrupt is get-or-create) and returns no ids.
    spark = connect(gateway.url(*NS_T1))
    assert spark.interruptAll() == []
    assert spark.sql("SELECT 1 AS one").first().one == 1


def test_stop_releases_the_session_and_get_or_create_starts_a_new_one(gateway: GatewayHarness) -> None:
    url = gateway.url(*NS_T1)
    sessions = [pyspark.sql.SparkSession.builder.remote(url).getOrCreate()]
    try:
        first = sessions[0]
        assert first.range(5).count() == 5
        first_id = first.client._session_id
        route = gateway.route(first_id)
        assert route is not None

        first.stop()
        # ReleaseSession went to the driver, and the route is gone.
        release = gateway.calls_for(first_id, "ReleaseSession")
        assert [c.outcome for c in release] == [route.driver_id]
        assert gateway.route(first_id) is None

        sessions.append(pyspark.sql.SparkSession.builder.remote(url).getOrCreate())
        second = sessions[1]
        assert second is not first
        assert second.client._session_id != first_id
        assert second.sql("SELECT 2 AS two").first().two == 2
        assert gateway.route(second.client._session_id) is not None
        second.stop()
        assert gateway.route(second.client._session_id) is None
    finally:
        stop_all(sessions)
