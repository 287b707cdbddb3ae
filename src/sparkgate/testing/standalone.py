"""A Spark standalone cluster (master + workers) from the installed pyspark wheel, for tests and trials.

Local drivers use a standalone cluster for their executors when ``local.master`` names it
(``spark://host:7077``): the driver (the Spark Connect server) stays where sparkgate starts it,
its executors run on the cluster's workers. This module starts such a cluster on loopback with
the wheel's own ``spark-class`` so that path is tested for real::

    with StandaloneCluster(workers=1, cores=2, memory="1g") as cluster:
        cluster.master_url        # spark://127.0.0.1:<port>
        cluster.state()           # the master's JSON: workers, active and completed apps

or ``python -m sparkgate.testing.standalone`` (prints the master URL, Ctrl-C stops it). Each
daemon runs in its own process group and is killed with it on exit.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from sparkgate.aio import free_port
from sparkgate.errors import SparkgateError
from sparkgate.spark.home import default_spark_home


class StandaloneCluster:
    def __init__(
        self,
        workers: int = 1,
        cores: int = 2,
        memory: str = "1g",
        *,
        spark_home: Path | None = None,
        workdir: Path | None = None,
        daemon_memory: str = "256m",
    ) -> None:
        self.spark_home = spark_home or default_spark_home()
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="sparkgate-standalone-"))
        self.workers, self.cores, self.memory = workers, cores, memory
        self.port, self.ui_port = free_port(), free_port()
        self.master_url = f"spark://127.0.0.1:{self.port}"
        self._env = dict(os.environ, SPARK_HOME=str(self.spark_home), SPARK_DAEMON_MEMORY=daemon_memory)
        self._procs: list[subprocess.Popen[bytes]] = []

    def _daemon(self, name: str, *args: str) -> None:
        log = open(self.workdir / f"{name}.log", "wb")
        cmd = [str(self.spark_home / "bin" / "spark-class"), *args]
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=self._env, start_new_session=True)
        log.close()
        self._procs.append(proc)

    def start(self, timeout: float = 120) -> StandaloneCluster:
        self._daemon(
            "master",
            "org.apache.spark.deploy.master.Master",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--webui-port",
            str(self.ui_port),
        )
        self._wait(lambda s: True, timeout, "the master to answer")
        for i in range(self.workers):
            self._daemon(
                f"worker-{i}",
                "org.apache.spark.deploy.worker.Worker",
                "--host",
                "127.0.0.1",
                "--cores",
                str(self.cores),
                "--memory",
                self.memory,
                "--webui-port",
                str(free_port()),
                "--work-dir",
                str(self.workdir / f"work-{i}"),
                self.master_url,
            )
        self._wait(lambda s: s.get("aliveworkers", 0) >= self.workers, timeout, f"{self.workers} worker(s)")
        return self

    def state(self) -> dict[str, Any]:
        """The master's status JSON (``workers``, ``activeapps``, ``completedapps``, ...)."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.ui_port}/json/", timeout=5) as resp:
            data: dict[str, Any] = json.load(resp)
        return data

    def _wait(self, ready: Any, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for proc in self._procs:
                if proc.poll() is not None:
                    raise SparkgateError(f"a standalone daemon exited with {proc.returncode}; logs in {self.workdir}")
            with contextlib.suppress(OSError, ValueError):
                if ready(self.state()):
                    return
            time.sleep(0.5)
        raise SparkgateError(f"timed out after {timeout:.0f}s waiting for {what}; logs in {self.workdir}")

    def stop(self) -> None:
        for proc in reversed(self._procs):
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        for proc in self._procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        self._procs.clear()

    def __enter__(self) -> StandaloneCluster:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main() -> None:  # pragma: no cover - manual use
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # unwinds through the cluster's __exit__
    with StandaloneCluster() as cluster, contextlib.suppress(KeyboardInterrupt):
        print(f"READY {cluster.master_url}  (UI http://127.0.0.1:{cluster.ui_port}; Ctrl-C stops it)", flush=True)
        while True:
            time.sleep(3600)


if __name__ == "__main__":  # pragma: no cover
    main()
