"""A throw-away Redis server for tests: ``with TempRedis() as url: ...``.

Uses Debian's ``redis-server`` (``scripts/test`` installs the package when it is missing): a free
loopback port, no persistence, its directory removed on exit. :meth:`TempRedis.pause` and
:meth:`TempRedis.resume` stop and continue the process (SIGSTOP/SIGCONT: a Redis that does not
answer), :meth:`TempRedis.restart` starts it again empty (a Redis that lost its data).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from sparkgate.aio import free_port


def find_server() -> str | None:
    return shutil.which("redis-server") or (
        "/usr/bin/redis-server" if os.access("/usr/bin/redis-server", os.X_OK) else None
    )


class TempRedis:
    def __init__(self, *, replica_of: TempRedis | None = None) -> None:
        server = find_server()
        if server is None:
            raise RuntimeError("Redis is not installed (apt-get install redis-server)")
        self.server = server
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="sparkgate-redis-"))
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None
        self.replica_of = replica_of

    def start(self) -> None:
        argv = [self.server, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        argv += ["--dir", str(self.dir), "--logfile", str(self.dir / "redis.log")]
        if self.replica_of is not None:
            argv += ["--replicaof", "127.0.0.1", str(self.replica_of.port)]
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited with code {self.proc.returncode}")
            time.sleep(0.05)
        raise RuntimeError(f"redis-server did not answer on port {self.port} within 20s")

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGCONT)
            proc.kill()
            proc.wait(10)

    def restart(self) -> None:
        """Stop and start again, empty (no persistence): a Redis that lost its data."""
        self.stop()
        self.start()

    def pause(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGCONT)

    def __enter__(self) -> str:
        self.start()
        return self.url

    def __exit__(self, *exc: object) -> None:
        try:
            self.stop()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)


class TempSentinels:
    """Three Redis Sentinels watching ``primary`` (as ``mymaster``), quick to fail over: a primary
    that does not answer for half a second is replaced by a replica."""

    def __init__(self, primary: TempRedis, name: str = "mymaster") -> None:
        self.primary = primary
        self.name = name
        self.dir = Path(tempfile.mkdtemp(prefix="sparkgate-sentinel-"))
        self.ports = [free_port() for _ in range(3)]
        self.procs: list[subprocess.Popen[bytes]] = []

    @property
    def addresses(self) -> list[str]:
        return [f"127.0.0.1:{p}" for p in self.ports]

    def __enter__(self) -> TempSentinels:
        server = find_server()
        assert server is not None
        for port in self.ports:
            conf = self.dir / f"sentinel-{port}.conf"
            conf.write_text(
                f"port {port}\nbind 127.0.0.1\ndir {self.dir}\n"
                f"sentinel monitor {self.name} 127.0.0.1 {self.primary.port} 2\n"
                f"sentinel down-after-milliseconds {self.name} 500\n"
                f"sentinel failover-timeout {self.name} 3000\n"
            )
            argv = [server, str(conf), "--sentinel", "--logfile", str(self.dir / f"sentinel-{port}.log")]
            self.procs.append(subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        return self

    def primary_port(self) -> int | None:
        """The port the Sentinels name for the primary now (None: no answer)."""
        for port in self.ports:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                    s.sendall(f"SENTINEL get-master-addr-by-name {self.name}\r\n".encode())
                    reply = s.recv(256).decode(errors="replace").split("\r\n")
                    if len(reply) >= 5 and reply[0] == "*2":
                        return int(reply[4])
            except (OSError, ValueError):
                continue
        return None

    def __exit__(self, *exc: object) -> None:
        for proc in self.procs:
            proc.kill()
            proc.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)
