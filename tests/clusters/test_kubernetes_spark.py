"""A driver Pod exactly as sparkgate builds it, run as a real Spark Connect server (the pyspark
wheel's, by the fake kubelet), and a pyspark session through the gateway to it: the Pod's
``spark-submit`` arguments, its properties from its Secret and its token from its environment
work with real Spark."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from sparkgate.config import load_settings
from sparkgate.platform import Platform
from sparkgate.testing.kube import FakeKubeApi, FakeKubelet, spark_connect_runner

pytestmark = pytest.mark.spark


async def test_a_pyspark_session_through_the_gateway_runs_on_a_driver_pod(tmp_path: Path) -> None:
    key = tmp_path / "token-key"
    key.write_bytes(b"0123456789abcdef0123456789abcdef")
    async with FakeKubeApi() as api, FakeKubelet(api, spark_connect_runner):
        settings = load_settings(
            None,
            {},
            gateway={"host": "127.0.0.1", "port": 0},
            admin={"enabled": False},
            runner={"enabled": False},
            playground={"enabled": False},
            pool={"size": 1, "profiles": {"default": {"spark_conf": {"spark.sql.shuffle.partitions": "3"}}}},
            state_dir=tmp_path / "state",
            environments={"prod": {"provider": "kubernetes"}},
            kubernetes={
                "namespace": "default",
                "kubeconfig": str(api.write_kubeconfig(tmp_path / "kubeconfig")),
                "token_key_file": str(key),
                "plugin_jar": "",
                "startup_timeout_seconds": 120,
            },
        )
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
            pod = api.get_object("pods", driver.id, "default")
            assert pod is not None and pod["metadata"]["annotations"]["sparkgate.io/namespace"] == "sjns-fe-prod"
