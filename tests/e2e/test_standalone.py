"""Local drivers on a Spark standalone cluster: `local.master: spark://…` puts their executors there.

A real master and worker from the pyspark wheel (:mod:`sparkgate.testing.standalone`), a real
`sparkgate up` pointed at it by environment overrides, a real pyspark client through the gateway.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from sparkgate.aio import free_port
from sparkgate.testing.standalone import StandaloneCluster

pytestmark = pytest.mark.spark


def test_drivers_run_their_executors_on_a_standalone_cluster(tmp_path: Path) -> None:
    with StandaloneCluster(workers=1, cores=2, memory="1g", workdir=tmp_path) as cluster:
        port = free_port()
        env = dict(
            os.environ,
            SPARKGATE__LOCAL__MASTER=cluster.master_url,
            # Each driver takes one core and a small executor, so two drivers fit on the worker.
            **{"SPARKGATE__LOCAL__SPARK_CONF__spark.cores.max": "1"},
            **{"SPARKGATE__LOCAL__SPARK_CONF__spark.executor.memory": "512m"},
        )
        cmd = [sys.executable, "-m", "sparkgate.cli", "up", "--port", str(port), "--admin-port", "0"]
        cmd += ["--runner-port", "0", "--playground-port", "0", "--state-dir", str(tmp_path / "state")]
        up = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            assert up.stdout is not None
            deadline = time.monotonic() + 240
            while "sparkgate is ready" not in up.stdout.readline():
                assert time.monotonic() < deadline and up.poll() is None, "sparkgate up did not become ready"
            url = f"sc://localhost:{port}/;x-doordash-team=standalone;x-doordash-environment=local"
            spark = SparkSession.builder.remote(url).create()
            try:
                assert spark.conf.get("spark.master") == cluster.master_url
                assert spark.range(1_000_000).selectExpr("sum(id) AS s").first().s == 499_999_500_000  # type: ignore[union-attr]
            finally:
                spark.stop()
            apps = cluster.state()["activeapps"]
            running = [a for a in apps if a["name"].startswith("sparkgate-local-") and a["state"] == "RUNNING"]
            assert running and all(a["cores"] == 1 for a in running), apps
        finally:
            up.send_signal(signal.SIGTERM)
            up.communicate(timeout=90)
        # The drivers stopped with `sparkgate up`: their applications are finished on the master.
        deadline = time.monotonic() + 30
        while cluster.state()["activeapps"] and time.monotonic() < deadline:
            time.sleep(0.5)
        assert cluster.state()["activeapps"] == []
