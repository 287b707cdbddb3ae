"""The images of deploy/docker, built from their Dockerfiles (tests/deploy/images.py: buildah on a
Debian base made with debootstrap) and run:

* a driver Pod exactly as the gateway builds it, run in the driver image (its own spark-submit,
  Java, Python, plugin jar and class-data archive; only the master made local), serving a pyspark
  session through the gateway, with the path catalog writing as the image's user;
* a batch job's SparkApplication run as the Spark Operator starts its driver (the image's
  entrypoint in ``driver`` mode, the job program from the image);
* the entrypoint's ``executor`` mode starting Spark's Kubernetes executor backend;
* the gateway image's command, and the packages its runner and Kubernetes client need.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from sparkgate.clusters.driver_pod import heap_for
from sparkgate.config import KubernetesJobSettings, KubernetesPodSettings, load_settings
from sparkgate.platform import Platform
from sparkgate.runner.jobs import Job, job_id, namespace_for_job
from sparkgate.runner.kubernetes import build_spark_application
from sparkgate.runner.manifest import parse_manifest
from sparkgate.testing.kube import FakeKubeApi, FakeKubelet, ImageRunner, SparkSubmitRunner
from tests.clusters.test_kubernetes import NS, token_key
from tests.deploy.images import Builder, available

pytestmark = [pytest.mark.spark, pytest.mark.skipif(bool(available()), reason=available() or "-")]

#: The images as the settings and the chart name them.
DRIVER_IMAGE = KubernetesPodSettings().image
GATEWAY_IMAGE = "ghcr.io/sparkgate/sparkgate:test"


@pytest.fixture(scope="module")
def builder(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Builder]:
    """Both images, built from scratch (with SPARKGATE_IMAGE_STORE=DIR: in that buildah storage,
    kept for the next run, whose build reuses unchanged layers)."""
    store = os.environ.get("SPARKGATE_IMAGE_STORE")
    b = Builder(Path(store) if store else tmp_path_factory.mktemp("images"))
    try:
        b.build("driver.Dockerfile", DRIVER_IMAGE)
        b.build("gateway.Dockerfile", GATEWAY_IMAGE)
        yield b
        assert b.running() == [], "processes of the images' containers outlived their tests"
    finally:
        b.close(keep_images=bool(store))


@pytest.fixture(scope="module")
def driver(builder: Builder) -> str:
    """A working container of the driver image (Pods of the image share its file system)."""
    return builder.working_container(DRIVER_IMAGE)


async def test_a_driver_pod_in_the_driver_image_serves_a_session_through_the_gateway(
    builder: Builder, driver: str, tmp_path: Path
) -> None:
    # The heap of a default driver Pod: the image's class-data archive fits it.
    heap = heap_for(KubernetesPodSettings().memory)
    local = SparkSubmitRunner(master="local[2]", driver_memory=heap, spark_submit="/opt/spark/bin/spark-submit")
    runner = ImageRunner({DRIVER_IMAGE: driver}, command=local, buildah=builder.buildah)
    async with FakeKubeApi() as api, FakeKubelet(api, runner):
        settings = load_settings(
            None,
            {},
            gateway={"host": "127.0.0.1", "port": 0},
            admin={"enabled": False},
            runner={"enabled": False},
            playground={"enabled": False},
            # -Xshare:on: the JVM refuses to start unless it maps the image's class-data archive.
            pool={"size": 1, "profiles": {"default": {"spark_conf": {"spark.driver.extraJavaOptions": "-Xshare:on"}}}},
            state_dir=tmp_path / "state",
            environments={"prod": {"provider": "kubernetes"}},
            kubernetes={
                "namespace": NS,
                "kubeconfig": str(api.write_kubeconfig(tmp_path / "kubeconfig", namespace=NS)),
                "token_key_file": str(token_key(tmp_path)),
                "startup_timeout_seconds": 180,
            },
        )
        # The image's plugin jar, where the settings say it is.
        assert settings.kubernetes.plugin_jar == "local:///opt/sparkgate/sparkgate-driver-plugin.jar"
        async with Platform(settings) as p:
            await p.clusters.wait_pool_ready(timeout=180)

            def query() -> tuple[list[int], str]:
                from pyspark.sql import SparkSession

                url = f"sc://127.0.0.1:{p.gateway.port}/;x-doordash-team=fe;x-doordash-environment=prod"
                spark = SparkSession.builder.remote(url).create()
                try:
                    # The path catalog (the plugin jar) writes under /opt/sparkgate/catalog as the
                    # image's user; Python UDFs run on the image's Python.
                    spark.sql("CREATE NAMESPACE IF NOT EXISTS pedregal.checks")
                    spark.sql("CREATE TABLE pedregal.checks.squares AS SELECT id, id * id AS sq FROM range(4)")
                    rows = spark.sql("SELECT sq FROM pedregal.checks.squares ORDER BY id").collect()
                    user = spark.sql("SELECT current_user() AS u").collect()[0]["u"]
                    return [r["sq"] for r in rows], str(user)
                finally:
                    spark.stop()

            squares, user = await asyncio.to_thread(query)
            assert squares == [0, 1, 4, 9]
            assert user == "spark"  # UID 185, not root


def test_a_batch_job_runs_as_the_spark_operator_starts_its_driver(
    builder: Builder, driver: str, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    out.mkdir(mode=0o777)
    out.chmod(0o777)  # (the image's user writes here)
    manifest = """
apiVersion: dcp.pedregal.doordash.com/v1
kind: SparkJob
metadata: {name: image-check, team: platform}
spec:
  engine: {version: "4.1"}
  coreEtl:
    sources: [{name: nums, sql: "SELECT id, id % 3 AS k FROM range(30)"}]
    transforms: [{name: counts, sql: "SELECT k, count(*) AS n FROM nums GROUP BY k"}]
    sinks: [{from: counts, path: counts, format: parquet, mode: overwrite}]
"""
    job = Job(
        id=job_id("platform", "image-check", 1700000000000000000),
        name="image-check",
        team="platform",
        environment="prod",
        user="jane@example.com",
        namespace=namespace_for_job("platform", "prod", "jane@example.com"),
        manifest=manifest,
    )
    settings = KubernetesJobSettings(output_uris={"default": "/opt/spark/work-dir/out/{job_id}"})
    app = build_spark_application(job, parse_manifest(manifest), settings)
    spec = app["spec"]
    assert spec["image"] == DRIVER_IMAGE  # one image for driver Pods and batch jobs
    conf = [arg for k, v in sorted(spec["sparkConf"].items()) for arg in ("--conf", f"{k}={v}")]
    # What the operator's spark-submit puts in the driver Pod: `driver`, then the submission.
    argv = ["/opt/entrypoint.sh", "driver", "--master", "local[2]", *conf, "--name", app["metadata"]["name"]]
    log = builder.run(
        driver,
        *argv,
        spec["mainApplicationFile"],
        *spec["arguments"],
        options=("--env", "SPARK_DRIVER_BIND_ADDRESS=127.0.0.1", "--volume", f"{out}:/opt/spark/work-dir/out"),
    )
    result = json.loads((out / job.id / "result.json").read_text())
    assert result["count"] == 3, log[-3000:]
    assert sorted(r["n"] for r in result["preview"]) == [10, 10, 10]


def test_the_entrypoint_starts_an_executor_as_spark_asks(builder: Builder, driver: str) -> None:
    """Spark's executor Pod spec passes everything in the environment; with no driver there the
    backend starts, says whom it reaches, and gives up."""
    env = {
        "SPARK_DRIVER_URL": "spark://CoarseGrainedScheduler@127.0.0.1:1",
        "SPARK_EXECUTOR_ID": "1",
        "SPARK_EXECUTOR_CORES": "1",
        "SPARK_EXECUTOR_MEMORY": "256m",
        "SPARK_APPLICATION_ID": "spark-0123",
        "SPARK_EXECUTOR_POD_IP": "127.0.0.1",
        "SPARK_EXECUTOR_POD_NAME": "x-exec-1",
        "SPARK_JAVA_OPT_0": "-Dspark.driver.port=1",
        "SPARK_JAVA_OPT_1": "-Dspark.network.timeout=5s",
    }
    options = tuple(arg for k, v in env.items() for arg in ("--env", f"{k}={v}"))
    with pytest.raises(AssertionError) as failed:
        builder.run(driver, "/opt/entrypoint.sh", "executor", options=options, timeout=120)
    log = str(failed.value)
    assert "KubernetesExecutorBackend" in log
    assert "127.0.0.1:1" in log


def test_the_gateway_image_runs_sparkgate_with_what_its_parts_need(builder: Builder) -> None:
    gateway = builder.working_container(GATEWAY_IMAGE)
    assert "usage: sparkgate" in builder.run(gateway, "sparkgate", "--help")
    modules = "sparkgate.kube.api, lightkube, psycopg, redis, uvloop, pyspark.sql.connect.session"
    out = builder.run(gateway, "python3", "-c", f"import os, {modules}; print(os.getuid())")
    assert out.strip().splitlines()[-1] == "10001"
