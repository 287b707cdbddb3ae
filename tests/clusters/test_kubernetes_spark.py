"""A driver Pod exactly as sparkgate builds it, run as a real Spark Connect server (the pyspark
wheel's, by the fake kubelet), and a pyspark session through the gateway to it: the Pod's
``spark-submit`` arguments, its properties from its Secret and its token from its environment
work with real Spark."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from sparkgate.platform import Platform
from sparkgate.testing.kube import FakeKubeApi, FakeKubelet, spark_connect_runner
from tests.clusters.test_kubernetes import NS, platform_settings, token_key

pytestmark = pytest.mark.spark


async def test_a_pyspark_session_through_the_gateway_runs_on_a_driver_pod(tmp_path: Path) -> None:
    async with FakeKubeApi() as api, FakeKubelet(api, spark_connect_runner):
        conf = {"spark.sql.shuffle.partitions": "3"}
        profiles = {"default": {"spark_conf": conf}}
        settings = platform_settings(api, tmp_path, token_key(tmp_path), startup_timeout_seconds=120, profiles=profiles)
        async with Platform(settings) as p:
            await p.clusters.wait_pool_ready(timeout=120)
            (driver,) = p.clusters.warm()

            def query() -> tuple[int, str]:
                from pyspark.sql import SparkSession

                url = f"sc://127.0.0.1:{p.gateway.port}/;x-doordash-team=fe;x-doordash-environment=prod"
                spark = SparkSession.builder.remote(url).create()
                try:
                    df = spark.range(10)
                    rows = df.groupBy((df.id % 2).alias("k")).count().collect()
                    return len(rows), spark.conf.get("spark.sql.shuffle.partitions") or ""
                finally:
                    spark.stop()

            groups, partitions = await asyncio.to_thread(query)
            assert groups == 2
            assert partitions == "3"  # the profile's conf, from the driver's Secret
            pod = api.get_object("pods", driver.id, NS)
            assert pod is not None and pod["metadata"]["annotations"]["sparkgate.io/namespace"] == "sjns-fe-prod"
