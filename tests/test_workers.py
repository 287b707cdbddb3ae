"""``sparkgate gateway --workers N``: N processes on one port, each a replica sharing state in Redis."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from sparkgate.aio import free_port, pid_alive
from sparkgate.config import load_settings
from sparkgate.errors import ConfigError
from sparkgate.testing.redis import TempRedis
from sparkgate.workers import worker_argv, worker_count


def test_how_many_workers() -> None:
    redis = {"backend": "redis", "redis_url": "redis://127.0.0.1:1/0"}
    assert worker_count(load_settings(None, {})) == 1  # alone: one process
    assert worker_count(load_settings(None, {}, state=redis)) == len(os.sched_getaffinity(0))  # one per core
    assert worker_count(load_settings(None, {}, state=redis), 3) == 3
    assert worker_count(load_settings(None, {}, state=redis, gateway={"workers": 2})) == 2
    with pytest.raises(ConfigError, match=r"need state\.backend: redis"):
        worker_count(load_settings(None, {}), 2)
    with pytest.raises(ConfigError, match="fixed port"):
        worker_count(load_settings(None, {}, state=redis, gateway={"port": 0}), 2)


def test_a_worker_runs_the_same_command_without_workers() -> None:
    argv = worker_argv(["gateway", "--workers", "4", "--port", "15002", "--workers=2", "--keep-drivers"])
    assert argv[1:] == ["-m", "sparkgate.cli", "gateway", "--port", "15002", "--keep-drivers"]


def _status(admin_port: int) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/status", timeout=5) as resp:
        data: dict[str, Any] = json.load(resp)
        return data


def _wait(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if predicate():
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.2)


def _children(pid: int) -> set[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True, check=False).stdout
    return {int(p) for p in out.split()}


def test_two_workers_share_the_port_a_dead_one_is_replaced_and_none_outlives_the_supervisor(
    redis_server: TempRedis, tmp_path: Path
) -> None:
    port, admin = free_port(), free_port()
    config = tmp_path / "sparkgate.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "state_dir": str(tmp_path / "state"),
                "state": {"backend": "redis", "redis_url": redis_server.url, "key_prefix": f"w{uuid.uuid4().hex[:6]}"},
                "pool": {"size": 0},
            }
        )
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPARKGATE_")}
    argv = [sys.executable, "-m", "sparkgate.cli", "gateway", "--config", str(config), "--workers", "2"]
    argv += ["--host", "127.0.0.1", "--port", str(port), "--admin-port", str(admin)]
    log = tmp_path / "gateway.log"
    with log.open("wb") as out:
        supervisor = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        # Both workers bound the one port and announce themselves as replicas (admin: the first).
        _wait(lambda: len(_status(admin)["replicas"]) == 2, 30, "two workers as replicas")
        workers = _children(supervisor.pid)
        assert len(workers) == 2, log.read_text()[-3000:]
        victim = max(workers)
        os.kill(victim, signal.SIGKILL)  # a worker crashes: the supervisor starts another
        _wait(lambda: len(_children(supervisor.pid) - {victim}) == 2, 30, "a new worker")
        workers = _children(supervisor.pid)
        supervisor.kill()  # kill -9 of the supervisor: no worker is left serving the port
        supervisor.wait(10)
        for pid in workers:
            _wait(lambda pid=pid: not pid_alive(pid), 30, f"worker {pid} to exit with its supervisor")
    finally:
        if supervisor.poll() is None:
            supervisor.terminate()
            supervisor.wait(30)
