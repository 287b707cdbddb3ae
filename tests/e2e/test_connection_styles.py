"""Common ways of connecting, run through the gateway with only the host changed.

A service's direct connection (routing headers as builder options) reads the local ``pedregal``
catalog; a notebook's ``get_spark`` helper runs queries over inline data (the example notebook
itself runs in test_client.py).
"""

from __future__ import annotations

import os

import pytest
from pyspark.sql import SparkSession

from .conftest import NS_API, NS_NOTEBOOK, GatewayHarness, stop_all

pytestmark = pytest.mark.spark


def test_a_service_connects_directly_with_routing_options(
    gateway: GatewayHarness, capsys: pytest.CaptureFixture[str]
) -> None:
    # A service's connection verbatim, but for the host (the query reads the local pedregal catalog).
    spark = (
        SparkSession.builder.remote(f"sc://127.0.0.1:{gateway.port}")
        .config("spark.connect.grpc.header.x-doordash-team", "feature-engineering")
        .config("spark.connect.grpc.header.x-doordash-environment", "prod")
        .config("spark.connect.grpc.header.x-doordash-user", "service-account")
        .appName("my-api-service")
        .getOrCreate()
    )
    try:
        # Use Spark as normal
        df = spark.sql("SELECT * FROM pedregal.feature_store.user_features LIMIT 10")
        df.show()
        assert "|user_id|total_events|" in capsys.readouterr().out
        assert len(df.collect()) == 10

        route = gateway.route(spark.client._session_id)
        assert route is not None
        assert (route.team, route.environment) == NS_API
        assert route.owner == "service-account"
        assert gateway.namespace_of(route.driver_id) == "sjns-feature-engineering-prod"
        # The builder's options reached the driver's session (replayed or forwarded as sent).
        assert spark.conf.get("spark.connect.grpc.header.x-doordash-team") == "feature-engineering"
    finally:
        stop_all([spark])


def get_spark(
    gateway: GatewayHarness,
    team: str,
    environment: str = "staging",
    app_name: str | None = None,
) -> SparkSession:
    """A notebook's helper as commonly written, with every environment's gateway pointing at ours."""
    user = os.getenv("JUPYTERHUB_USER", os.getenv("USER", "unknown"))
    gateways = {env: "127.0.0.1" for env in ("local", "staging", "prod")}
    host = gateways.get(environment, gateways["staging"])
    app = app_name or f"jupyter-{user}-{environment}"
    spark = (
        SparkSession.builder.remote(f"sc://{host}:{gateway.port}")
        .config("spark.connect.grpc.header.x-doordash-team", team)
        .config("spark.connect.grpc.header.x-doordash-environment", environment)
        .config("spark.connect.grpc.header.x-doordash-user", user)
        .appName(app)
        .getOrCreate()
    )
    print(f"Connected to Spark {spark.version}")
    print(f"Team: {team}, Environment: {environment}")
    return spark


def test_a_notebook_connects_through_get_spark(gateway: GatewayHarness, capsys: pytest.CaptureFixture[str]) -> None:
    spark = get_spark(gateway, team="data-science", environment="staging")
    try:
        assert "Connected to Spark 4.1.4" in capsys.readouterr().out
        spark.range(0, 60).selectExpr("id % 3 AS user_id", "id AS order_id").createOrReplaceTempView("orders")
        df = spark.sql("SELECT user_id, COUNT(*) AS orders FROM orders GROUP BY user_id ORDER BY user_id")
        df.show()
        assert "|user_id|orders|" in capsys.readouterr().out
        pdf = df.toPandas()
        assert pdf["orders"].tolist() == [20, 20, 20]

        route = gateway.route(spark.client._session_id)
        assert route is not None
        assert (route.team, route.environment) == NS_NOTEBOOK
    finally:
        stop_all([spark])
