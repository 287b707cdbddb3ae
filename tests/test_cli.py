"""The ``sparkgate`` command: help, config, and ``up`` stopping every driver it started."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest

from sparkgate.aio import free_port, pid_alive
from sparkgate.cli import _progress, main
from sparkgate.clusters.manager import StartBackoff


def test_help_teaches(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["up", "--help"])
    out = capsys.readouterr().out
    assert "--pool-size" in out and "SPARKGATE__" in out and "examples" in out


def test_config_prints_effective_settings(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPARKGATE__POOL__SIZE", "3")
    assert main(["config"]) == 0
    assert "size: 3" in capsys.readouterr().out


def test_bad_config_is_one_clear_line(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPARKGATE__GATEWAY__PORT", "not-a-port")
    assert main(["config"]) == 1
    err = capsys.readouterr().err
    assert "gateway.port" in err and "Traceback" not in err


def _driver_pids(state: Path) -> list[int]:
    pids = []
    for rec in state.glob("drivers/*/driver.json"):
        try:
            pids.append(json.loads(rec.read_text())["pid"])
        except (OSError, ValueError):
            pass
    return pids


def _start_up(tmp_path: Path) -> tuple[subprocess.Popen[str], int]:
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "sparkgate.cli",
            "up",
            "--port",
            str(port),
            "--admin-port",
            "0",
            "--runner-port",
            "0",
            "--playground-port",
            "0",
            "--state-dir",
            str(tmp_path),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    return proc, port


def _wait_for_line(proc: subprocess.Popen[str], needle: str, timeout: float) -> list[str]:
    assert proc.stdout is not None
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        seen.append(line)
        if needle in line:
            return seen
    raise AssertionError(f"never saw {needle!r}; output:\n{''.join(seen)}")


@pytest.mark.spark
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_up_stops_every_driver(tmp_path: Path, sig: signal.Signals) -> None:
    # While the driver is still warming (test_readme stops a ready platform with Ctrl-C).
    proc, port = _start_up(tmp_path)
    try:
        out = _wait_for_line(proc, "warming drivers: 0/1 ready", 60)  # progress while drivers warm
        assert any(f"sc://localhost:{port}" in line for line in out)
        deadline = time.monotonic() + 60
        while not (pids := _driver_pids(tmp_path)) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert pids, "a driver record should exist"
        proc.send_signal(sig)
        rest, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0, rest
        assert "stopped" in rest
        for pid in pids:
            assert not pid_alive(pid), f"driver JVM {pid} outlived `sparkgate up`"
    finally:
        if proc.poll() is None:
            proc.kill()


def test_certs_makes_a_ca_server_and_client_certificates(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import ssl

    assert main(["certs", "--state-dir", str(tmp_path), "--client", "sparkgate-runner", "--san", "gw.internal"]) == 0
    out = capsys.readouterr().out
    d = tmp_path / "certs"
    assert "GRPC_DEFAULT_SSL_ROOTS_FILE_PATH" in out and "client_ca_file" in out
    assert (d / "server-key.pem").stat().st_mode & 0o777 == 0o600
    ctx = ssl.create_default_context(cafile=str(d / "ca.pem"))  # the CA verifies what it signed
    ctx.load_cert_chain(d / "sparkgate-runner.pem", d / "sparkgate-runner-key.pem")
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(d / "server.pem", d / "server-key.pem")


class _Pool:
    """What ``sparkgate up``'s progress reads of a platform: a pool that fills when told."""

    def __init__(self) -> None:
        self.pool_size = 1
        self.filled = asyncio.Event()
        self.failure: Exception | None = None
        self.backoff: dict[str, StartBackoff] = {}

    def warm(self) -> list[object]:
        return [object()] if self.filled.is_set() else []

    async def wait_pool_ready(self, timeout: float | None = None) -> None:
        await self.filled.wait()
        if self.failure is not None:
            raise self.failure


async def test_up_says_ready_as_soon_as_the_pool_is(capsys: pytest.CaptureFixture[str]) -> None:
    pool = _Pool()
    progress = asyncio.create_task(_progress(cast(Any, SimpleNamespace(clusters=pool)), asyncio.Event()))
    await asyncio.sleep(0.1)
    t0 = time.monotonic()
    pool.filled.set()
    await asyncio.wait_for(progress, 5)
    assert time.monotonic() - t0 < 0.5  # (not at the next once-a-second look)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("  warming drivers: 0/1 ready") and lines[-1].startswith("  warming drivers: 1/1 ready")


async def test_up_reports_a_pool_that_failed_instead_of_ready() -> None:
    pool = _Pool()
    pool.failure = TimeoutError("the pool did not fill")
    pool.filled.set()
    with pytest.raises(TimeoutError, match="did not fill"):
        await _progress(cast(Any, SimpleNamespace(clusters=pool)), asyncio.Event())


async def test_up_stops_waiting_when_told_to_stop() -> None:
    stop = asyncio.Event()
    progress = asyncio.create_task(_progress(cast(Any, SimpleNamespace(clusters=_Pool())), stop))
    stop.set()
    await asyncio.wait_for(progress, 5)


async def test_up_says_why_the_pool_does_not_fill(capsys: pytest.CaptureFixture[str]) -> None:
    pool = _Pool()
    pool.backoff["pool:default"] = StartBackoff(
        failures=2, retry_at=time.monotonic() + 20, last_error="driver local-1 exited with code 1 while starting\n..."
    )
    stop = asyncio.Event()
    progress = asyncio.create_task(_progress(cast(Any, SimpleNamespace(clusters=pool)), stop))
    await asyncio.sleep(0.1)
    stop.set()
    await asyncio.wait_for(progress, 5)
    line = capsys.readouterr().out.splitlines()[0]
    assert line.startswith("  warming drivers: 0/1 ready")
    assert "; start failing: 2x, next try in 20s: driver local-1 exited with code 1 while starting" in line
