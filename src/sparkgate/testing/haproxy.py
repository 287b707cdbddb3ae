"""haproxy in front of gateway replicas, for tests: ``with TempHaproxy(["127.0.0.1:P", ...]) as hp``.

Uses Debian's ``haproxy`` (``scripts/test`` installs the package when it is missing) in TCP mode,
as a Kubernetes Service or a cloud L4 load balancer would sit in front of the replicas: a client's
connection goes to one replica for its whole life; a replica that stops answering its health
check gets no new connections, and a connection it refuses is tried on another one.
:func:`haproxy_config` is also what ``examples/ha/haproxy.cfg`` holds (a test keeps them equal).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from sparkgate.aio import free_port


def find_haproxy() -> str | None:
    return shutil.which("haproxy") or ("/usr/sbin/haproxy" if os.access("/usr/sbin/haproxy", os.X_OK) else None)


def haproxy_config(listen: str, replicas: list[str]) -> str:
    """An haproxy configuration: TCP on ``listen`` (``host:port``), balanced over ``replicas``."""
    servers = "".join(
        f"    server gateway{i} {address} check inter 500ms fall 2 rise 2\n" for i, address in enumerate(replicas, 1)
    )
    return (
        "# Spark Connect clients -> sparkgate gateway replicas (TCP: HTTP/2 and TLS pass through untouched).\n"
        "global\n"
        "    maxconn 4096\n"
        "\n"
        "defaults\n"
        "    mode tcp\n"
        "    timeout connect 2s\n"
        "    # Streams of query results may stay quiet for long: the gateway keeps its own timeouts.\n"
        "    timeout client 1h\n"
        "    timeout server 1h\n"
        "    # A replica that refuses a connection (it stopped) is not tried again for it: another is.\n"
        "    retries 2\n"
        "    option redispatch\n"
        "\n"
        "frontend spark_connect\n"
        f"    bind {listen}\n"
        "    default_backend gateways\n"
        "\n"
        "backend gateways\n"
        "    balance leastconn\n"
        f"{servers}"
    )


class TempHaproxy:
    def __init__(self, replicas: list[str]) -> None:
        binary = find_haproxy()
        if binary is None:
            raise RuntimeError("haproxy is not installed (apt-get install haproxy)")
        self.binary = binary
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="sparkgate-haproxy-"))
        self.config = self.dir / "haproxy.cfg"
        self.config.write_text(haproxy_config(f"127.0.0.1:{self.port}", replicas))
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def __enter__(self) -> TempHaproxy:
        log = (self.dir / "haproxy.log").open("wb")
        # -db: stay in the foreground (stopped with the test); -W would add a master process.
        self.proc = subprocess.Popen([self.binary, "-db", "-f", str(self.config)], stdout=log, stderr=log)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"haproxy exited with code {self.proc.returncode}: {self.log_text()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"haproxy did not listen on port {self.port} within 20s")

    def log_text(self) -> str:
        try:
            return (self.dir / "haproxy.log").read_text(errors="replace")[-2000:]
        except OSError:
            return ""

    def __exit__(self, *exc: object) -> None:
        proc, self.proc = self.proc, None
        try:
            if proc is not None and proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(10)
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)
