"""Three ``sparkgate gateway`` processes behind haproxy, sharing their state in Redis, in front of
the e2e drivers: a replica killed while a query's results stream costs the client nothing, and a
fleet leader that stops is replaced by another replica, and acts on nothing once it wakes.

Real processes throughout: Debian's redis-server and haproxy (``mode tcp``), the gateways as
``python -m sparkgate.cli gateway`` with the YAML a user would write, pyspark as the client.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
import yaml
from pyspark.sql.connect.session import SparkSession

from sparkgate.aio import free_port
from sparkgate.testing.haproxy import TempHaproxy
from sparkgate.testing.redis import TempRedis
from tests.e2e.conftest import NS_T1, GatewayHarness

#: Rows of (id, 128 hex characters): about 270 MiB of Arrow, several seconds of streaming.
ROWS = 2_000_000
#: Bytes a replica has written to its client before it is killed: well into the results.
KILL_AFTER = 32 << 20


@dataclass
class Replica:
    proc: subprocess.Popen[bytes]
    port: int
    admin_port: int
    log: Path

    def status(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.admin_port}/status", timeout=5) as resp:
            data: dict[str, Any] = json.load(resp)
            return data

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.admin_port}/readyz", timeout=2) as resp:
                return bool(resp.status == 200)
        except OSError:
            return False

    def leads(self) -> bool:
        return bool(self.status()["gateway"]["leader"])

    def written(self) -> int:
        """Bytes the process has written so far (to its client, mostly: query results)."""
        for line in Path(f"/proc/{self.proc.pid}/io").read_text().splitlines():
            if line.startswith("wchar:"):
                return int(line.split()[1])
        raise AssertionError("no wchar in /proc/PID/io")


def _wait(predicate: Callable[[], bool], timeout: float, what: str) -> float:
    t0 = time.monotonic()
    while not predicate():
        if time.monotonic() - t0 > timeout:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.1)
    return time.monotonic() - t0


@pytest.fixture
def replicas(gateway: GatewayHarness, redis_server: TempRedis, tmp_path: Path) -> Iterator[list[Replica]]:
    """Three gateways sharing routes in Redis and the e2e drivers (the same state directory)."""
    config: dict[str, Any] = gateway.settings.model_dump(mode="json")
    config["gateway"]["host"] = "127.0.0.1"
    config["state"] = {"backend": "redis", "redis_url": redis_server.url, "key_prefix": f"e2e{uuid.uuid4().hex[:6]}"}
    # The drivers are the e2e suite's: these gateways adopt them and start none of their own.
    config["pool"]["size"] = 0
    for profile in config["pool"].get("profiles", {}).values():
        profile["size"] = 0
    path = tmp_path / "sparkgate.yaml"
    path.write_text(yaml.safe_dump(config))
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPARKGATE_")}
    started: list[Replica] = []
    try:
        for i in range(3):
            port, admin = free_port(), free_port()
            log = tmp_path / f"gateway{i}.log"
            argv = [sys.executable, "-m", "sparkgate.cli", "gateway", "--config", str(path)]
            # One process each (--workers 1): the process killed below is the whole replica; the
            # drivers are the e2e suite's, left running when the last replica leaves (--keep-drivers).
            argv += ["--port", str(port), "--admin-port", str(admin), "--workers", "1", "--keep-drivers"]
            with log.open("wb") as out:
                proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env)
            started.append(Replica(proc, port, admin, log))
        for r in started:
            _wait(lambda r=r: r.ready() or r.proc.poll() is not None, 60, f"replica on :{r.port} to be ready")
            assert r.proc.poll() is None, r.log.read_text()[-3000:]
        yield started
    finally:
        for r in started:
            with contextlib.suppress(ProcessLookupError):
                r.proc.send_signal(signal.SIGCONT)
                r.proc.terminate()
        for r in started:
            try:
                r.proc.wait(30)
            except subprocess.TimeoutExpired:
                r.proc.kill()
                r.proc.wait(10)


@pytest.fixture
def balancer(replicas: list[Replica], haproxy_binary: str) -> Iterator[TempHaproxy]:
    """haproxy in front of the replicas (set up before the test's Spark sessions: stopped after them)."""
    with TempHaproxy([f"127.0.0.1:{r.port}" for r in replicas]) as hp:
        yield hp


def test_a_replica_killed_mid_results_costs_the_client_nothing_and_a_stopped_leader_is_replaced(
    gateway: GatewayHarness,
    replicas: list[Replica],
    balancer: TempHaproxy,
    connect: Callable[..., SparkSession],
) -> None:
    url = gateway.url(*NS_T1).replace(f":{gateway.port}/", f":{balancer.port}/")
    spark = connect(url)
    spark.range(5).createOrReplaceTempView("made_before_the_kill")
    df = spark.range(0, ROWS, 1, 8).selectExpr("id", "sha2(cast(id AS string), 512) AS digest")

    before = {r.port: r.written() for r in replicas}
    outcome: dict[str, Any] = {}

    def fetch() -> None:
        try:
            outcome["table"] = df.toArrow()
        except BaseException as exc:  # (reported by the test's thread)
            outcome["error"] = exc

    reader = threading.Thread(target=fetch, name="toArrow")
    reader.start()
    victim: list[Replica] = []

    def streaming() -> bool:
        victim[:] = [r for r in replicas if r.written() - before[r.port] > KILL_AFTER]
        return bool(victim) or not reader.is_alive()

    _wait(streaming, 120, "the results to stream")
    assert victim and reader.is_alive(), "the results were not streaming through one replica"
    killed = victim[0]
    killed.proc.kill()  # kill -9, in the middle of the results
    killed.proc.wait(10)
    reader.join(300)
    assert not reader.is_alive(), "toArrow() did not finish after the replica was killed"
    assert "error" not in outcome, f"the query failed: {outcome.get('error')!r}"
    table: pa.Table = outcome["table"]
    assert table.num_rows == ROWS
    ids = table.column("id").to_pylist()
    assert sum(ids) == ROWS * (ROWS - 1) // 2 and len(set(ids)) == ROWS
    for row in (0, 1_234_567, ROWS - 1):
        i = ids[row]
        assert table.column("digest")[row].as_py() == hashlib.sha512(str(i).encode()).hexdigest()
    # The same Spark session, on the same driver: what it made before the kill is still there.
    assert spark.table("made_before_the_kill").count() == 5

    live = [r for r in replicas if r is not killed]
    _wait(lambda: sum(r.leads() for r in live) == 1, 30, "one live replica to lead the fleet")
    leader, other = (live[0], live[1]) if live[0].leads() else (live[1], live[0])
    leader.proc.send_signal(signal.SIGSTOP)  # the leader stops answering anything
    try:
        took = _wait(other.leads, 20, "another replica to take over the fleet")
    finally:
        leader.proc.send_signal(signal.SIGCONT)
    assert took < 15, f"the takeover took {took:.1f}s"
    # Awake again, the old leader knows its lease ran out (by its own clock): it acts on nothing.
    assert not leader.leads() and other.leads()
    assert spark.table("made_before_the_kill").count() == 5  # (and the session goes on)
