#!/usr/bin/env python3
"""Relay benchmark: a client talking to a fake Spark Connect backend directly, through nginx
``grpc_pass``, and through sparkgate's gateway, side by side in one run.

Measures, per path:

* **stream throughput** — ``ExecutePlan`` returning ``--total-mib`` of Arrow-sized messages
  (``--chunk-mib`` each), ``--reps`` times; the median MB/s (10^6 bytes/s) is reported;
* **unary latency** — ``--unary`` sequential ``Config`` calls after a warm-up; p50 / p99;
* **proxy CPU** — CPU seconds the proxy's processes used per GB streamed and per unary call.

Targets (issue): sparkgate throughput >= 1.0x nginx, and added p50 <= nginx's added p50 + 0.2 ms.

Backend, nginx and each gateway run as separate processes (own interpreters, own event loops),
each in its own process group, stopped at the end, on error and on Ctrl-C. Paths are measured
in interleaved rounds (a new seeded order each round) so drift on a shared machine hits all of them
alike and no path always follows the same one.

The installed gateway is measured as ``sparkgate`` (and, with ``--auth``, ``sparkgate+auth``); gateways
run on uvloop when it is installed, as ``sparkgate gateway`` does (``SPARKGATE_BENCH_LOOP=asyncio``
for the stock loop). To compare relay designs against the installed gateway in the same run:
``--variant NAME=SRCDIR[:K=V,...]`` adds a gateway run from another source tree (``SRCDIR`` holds a
``sparkgate`` package), and
``--command NAME=CMD`` adds any relay process that prints ``READY host:port``.

One run on a shared machine moves by +-15 %; ``relay_bench.py pool FILE...`` reads several runs'
JSON results and gives the verdicts over all of them (see :func:`pool`).
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import os
import random
import select
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from _stats import percentile

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"
NGINX_TEMPLATE = BENCH_DIR / "nginx.conf.template"
SERVICE_PATH = "/spark.connect.SparkConnectService/"
MIB = 1024 * 1024
MAX_MESSAGE_BYTES = 256 * MIB
#: Every path gets the same headers, a bearer token included: gateways without auth drop it (it is
#: the client's credential), ``--auth`` gateways verify it (once; then it is cached), nginx and the
#: backend ignore it. So every path carries exactly the same bytes.
BENCH_TOKEN = "bench-token-0123456789abcdef"
ROUTING_METADATA = (
    ("x-doordash-team", "bench"),
    ("x-doordash-environment", "local"),
    ("authorization", f"Bearer {BENCH_TOKEN}"),
)
USER_ID = "bench-user"
CHANNEL_OPTIONS = [
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
]

# -- child processes --------------------------------------------------------------------------


def _load_prctl() -> Any:
    with contextlib.suppress(OSError, AttributeError):
        return ctypes.CDLL("libc.so.6", use_errno=True).prctl
    return None


# Resolved in the parent: the child (between fork and exec) only makes the call.
_PRCTL = _load_prctl()
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """Runs in the child before exec: SIGTERM it if the benchmark dies without cleaning up."""
    if _PRCTL is not None:
        _PRCTL(_PR_SET_PDEATHSIG, signal.SIGTERM)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Child:
    """A process the benchmark started, in its own process group (its pid is the group id)."""

    name: str
    proc: subprocess.Popen[bytes]
    log: Path

    def group_pids(self) -> list[int]:
        pids = []
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                with contextlib.suppress(OSError, IndexError, ValueError):
                    stat = Path(f"/proc/{entry}/stat").read_text()
                    if int(stat.rsplit(") ", 1)[1].split()[2]) == self.proc.pid:
                        pids.append(int(entry))
        return pids

    def cpu_seconds(self) -> float:
        """User + system CPU time of the process group's live processes."""
        ticks = 0
        for pid in self.group_pids():
            with contextlib.suppress(OSError, IndexError, ValueError):
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()
                ticks += int(fields[11]) + int(fields[12])
        return ticks / os.sysconf("SC_CLK_TCK")

    def tail(self, lines: int = 15) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            raise RuntimeError(f"{self.name} exited with {self.proc.returncode}; log:\n{self.tail()}")

    def wait_ready_line(self, timeout: float) -> str:
        """Read the child's ``READY host:port`` line from its stdout."""
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.proc.stdout], [], [], 0.2)
            if ready:
                line = self.proc.stdout.readline().decode().strip()
                if line.startswith("READY "):
                    return line.split()[1]
            self.check_alive()
        raise TimeoutError(f"{self.name} not ready after {timeout:.0f}s; log:\n{self.tail()}")

    def stop(self, grace: float = 5.0) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(grace)
        with contextlib.suppress(ProcessLookupError):  # nginx workers outlive a killed master
            os.killpg(self.proc.pid, signal.SIGKILL)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def spawn(name: str, cmd: Sequence[str], workdir: Path, env: dict[str, str] | None = None) -> Child:
    log = workdir / f"{name}.log"
    with open(log, "wb") as logf:
        proc = subprocess.Popen(
            list(cmd),
            cwd=workdir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=logf,
            start_new_session=True,  # Ctrl-C reaches only us; we stop children in order
            preexec_fn=_die_with_parent,  # noqa: PLW1509  (only a prctl call, resolved beforehand)
        )
    return Child(name, proc, log)


def start_backend(workdir: Path, chunks: int, chunk_bytes: int) -> tuple[Child, str]:
    cmd = [sys.executable, "-m", "sparkgate.testing.fake_backend", "--chunks", str(chunks)]
    child = spawn("backend", [*cmd, "--chunk-bytes", str(chunk_bytes)], workdir)
    return child, child.wait_ready_line(30)


def start_nginx(workdir: Path, upstream: str, workers: str) -> tuple[Child, str]:
    prefix = workdir / "nginx"
    prefix.mkdir()
    listen = f"127.0.0.1:{free_port()}"
    conf = NGINX_TEMPLATE.read_text()
    for key, value in {"@PREFIX@": str(prefix), "@LISTEN@": listen, "@UPSTREAM@": upstream}.items():
        conf = conf.replace(key, value)
    (prefix / "nginx.conf").write_text(conf.replace("@WORKERS@", workers))
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(nginx).is_file():
        raise SystemExit("relay_bench.py needs nginx, its baseline: scripts/bench installs it (apt-get install nginx)")
    child = spawn("nginx", [nginx, "-p", str(prefix), "-c", "nginx.conf", "-e", "stderr"], workdir)
    wait_port(child, listen, 15)
    return child, listen


def start_gateway(  # noqa: PLR0917
    name: str,
    workdir: Path,
    backend: str,
    src: str | None,
    env_extra: dict[str, str],
    auth: bool = False,
    args: Sequence[str] = (),
) -> tuple[Child, str]:
    """A gateway (``_gateway``, with ``args``) in front of ``backend``; with its ``host:port``."""
    env = dict(os.environ, **env_extra)
    if src:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [src, env.get("PYTHONPATH")]))
    state = workdir / f"{name}-state"
    state.mkdir()
    cmd = [sys.executable, str(Path(__file__).resolve()), "_gateway", "--backend", backend]
    if auth:
        cmd += ["--auth"]
    child = spawn(name, [*cmd, *args, "--state-dir", str(state)], workdir, env)
    return child, child.wait_ready_line(60)


def wait_port(child: Child, address: str, timeout: float) -> None:
    host, port = address.rsplit(":", 1)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        child.check_alive()
        with contextlib.suppress(OSError), socket.create_connection((host, int(port)), timeout=0.5):
            return
        time.sleep(0.05)
    raise TimeoutError(f"{child.name} does not listen on {address}; log:\n{child.tail()}")


def gateway_main(argv: Sequence[str]) -> None:
    """The ``_gateway`` subcommand: sparkgate's gateway in front of one static backend."""
    import asyncio
    import logging

    parser = argparse.ArgumentParser(prog="relay_bench.py _gateway")
    parser.add_argument("--backend", required=True)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--state-dir", required=True)
    parser.add_argument("--auth", action="store_true", help="auth.mode static with the bench token, audit log on")
    parser.add_argument("--reuse-port", action="store_true", help="bind with SO_REUSEPORT (one of several workers)")
    parser.add_argument("--redis", metavar="URL", help="state.backend redis at URL (replicas sharing sessions)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)

    async def run() -> None:
        import sparkgate
        from sparkgate.clusters.manager import ClusterManager
        from sparkgate.clusters.static import StaticProvider
        from sparkgate.config import load_settings
        from sparkgate.gateway.server import Gateway

        gateway = {"port": args.port, "host": "127.0.0.1", "affinity": {"backend": "memory"}}
        gateway["reuse_port"] = args.reuse_port
        extra: dict[str, object] = {}
        if args.redis:
            extra["state"] = {"backend": "redis", "redis_url": args.redis, "key_prefix": "bench"}
        if args.auth:
            tokens = Path(args.state_dir) / "tokens.yaml"
            tokens.write_text(f"tokens:\n  - {{token: {BENCH_TOKEN}, subject: bench@example.com, groups: [bench]}}\n")
            extra["auth"] = {"mode": "static", "tokens_file": str(tokens)}
        settings = load_settings(None, {}, gateway=gateway, state_dir=args.state_dir, **extra)
        # One driver takes every session the benchmark's clients open (never released).
        clusters = ClusterManager(StaticProvider([args.backend]), pool_size=0, sessions_per_driver=1_000_000)
        await clusters.start()
        async with Gateway(settings, clusters) as gw:
            print(f"READY 127.0.0.1:{gw.port} {sparkgate.__file__}", flush=True)
            await gw.wait()

    # Like `sparkgate gateway`: uvloop when installed; SPARKGATE_BENCH_LOOP=asyncio for the stock loop.
    loop_factory = None
    if os.environ.get("SPARKGATE_BENCH_LOOP", "uvloop") == "uvloop":
        with contextlib.suppress(ImportError):
            import uvloop

            loop_factory = uvloop.new_event_loop
    with contextlib.suppress(KeyboardInterrupt), asyncio.Runner(loop_factory=loop_factory) as runner:
        runner.run(run())


# -- the client -------------------------------------------------------------------------------


def _ids(session_id: str) -> bytes:
    from sparkgate.connect.wire import encode_string

    return encode_string(1, session_id) + encode_string(2, encode_string(1, USER_ID))


def config_get_all_request(session_id: str) -> bytes:
    """``ConfigRequest{operation.get_all{}}`` (operation = 3, Operation.get_all = 5)."""
    from sparkgate.connect.wire import encode_string

    return _ids(session_id) + encode_string(3, encode_string(5, b"")) + encode_string(4, "bench")


def execute_plan_request(session_id: str) -> bytes:
    """``ExecutePlanRequest{plan.root.sql.query}`` with a fresh operation id (operation_id = 6)."""
    from sparkgate.connect.wire import encode_string

    plan = encode_string(1, encode_string(10, encode_string(1, "SELECT * FROM range(1)")))
    return _ids(session_id) + encode_string(3, plan) + encode_string(4, "bench") + encode_string(6, str(uuid.uuid4()))


class Client:
    """Raw-bytes gRPC client (sync stack: the lowest client overhead), one channel per path."""

    def __init__(self, address: str) -> None:
        import grpc

        self.channel = grpc.insecure_channel(address, options=CHANNEL_OPTIONS)
        self.session_id = str(uuid.uuid4())  # one session per path: routed once, then cached
        self._config = self.channel.unary_unary(SERVICE_PATH + "Config")
        self._execute = self.channel.unary_stream(SERVICE_PATH + "ExecutePlan")
        self._config_request = config_get_all_request(self.session_id)

    def unary(self) -> None:
        self._config(self._config_request, metadata=ROUTING_METADATA, timeout=30)

    def stream(self) -> tuple[int, float]:
        """One ExecutePlan; returns (payload bytes received, seconds)."""
        request = execute_plan_request(self.session_id)
        received = 0
        start = time.perf_counter()
        for msg in self._execute(request, metadata=ROUTING_METADATA, timeout=120):
            received += len(msg)
        return received, time.perf_counter() - start

    def latencies(self, n: int) -> list[float]:
        """Seconds per call for ``n`` sequential unary calls."""
        call, request, out = self._config, self._config_request, []
        for _ in range(n):
            start = time.perf_counter()
            call(request, metadata=ROUTING_METADATA, timeout=30)
            out.append(time.perf_counter() - start)
        return out

    def close(self) -> None:
        self.channel.close()


@dataclass
class PathResult:
    name: str
    address: str
    mbps: list[float] = field(default_factory=list)
    latencies_ms: list[float] = field(default_factory=list)
    proxy_cpu_stream_s: float = 0.0
    proxy_cpu_unary_s: float = 0.0
    #: CPU the fake backend and this client process spent while this path streamed.
    backend_cpu_stream_s: float = 0.0
    client_cpu_stream_s: float = 0.0
    bytes_streamed: int = 0

    @property
    def median_mbps(self) -> float:
        return statistics.median(self.mbps)

    def percentile(self, q: float) -> float:
        return percentile(self.latencies_ms, q)

    def per_gb(self, seconds: float) -> float | None:
        return seconds / (self.bytes_streamed / 1e9) if self.bytes_streamed else None

    def summary(self) -> dict[str, Any]:
        calls = len(self.latencies_ms)
        return {
            "address": self.address,
            "mbps_median": self.median_mbps,
            "mbps_all": self.mbps,
            "p50_ms": self.percentile(0.50),
            "p99_ms": self.percentile(0.99),
            "mean_ms": statistics.fmean(self.latencies_ms),
            "unary_calls": calls,
            "proxy_cpu_s_per_gb": self.per_gb(self.proxy_cpu_stream_s),
            "proxy_cpu_us_per_call": self.proxy_cpu_unary_s / calls * 1e6 if calls else None,
            "backend_cpu_s_per_gb": self.per_gb(self.backend_cpu_stream_s),
            "client_cpu_s_per_gb": self.per_gb(self.client_cpu_stream_s),
        }


def measure(
    paths: dict[str, str], proxies: dict[str, Child], backend: Child, args: argparse.Namespace
) -> dict[str, PathResult]:
    clients = {name: Client(addr) for name, addr in paths.items()}
    results = {name: PathResult(name, addr) for name, addr in paths.items()}
    try:
        for name, client in clients.items():  # warm-up: connections, routes, JIT-free but caches
            client.stream()
            client.latencies(args.warmup)
            log(f"  warm: {name}")
        per_round = max(1, args.unary // args.reps)
        order = list(clients)
        shuffle = random.Random(0).shuffle  # seeded: the same sequence of orders in every run
        for rnd in range(args.reps):
            # A new order each round: drift hits every path alike, and no path always runs right
            # after the same one (a rotation keeps each path's predecessor, and with it any effect
            # one path's stream has on the next, such as the backend's state or warm caches).
            round_order = list(order)
            shuffle(round_order)
            for name in round_order:
                client, res, proxy = clients[name], results[name], proxies.get(name)
                cpu0 = proxy.cpu_seconds() if proxy else 0.0
                backend0, client0 = backend.cpu_seconds(), time.process_time()
                received, seconds = client.stream()
                cpu1 = proxy.cpu_seconds() if proxy else 0.0
                res.backend_cpu_stream_s += backend.cpu_seconds() - backend0
                res.client_cpu_stream_s += time.process_time() - client0
                res.latencies_ms += [s * 1e3 for s in client.latencies(per_round)]
                cpu2 = proxy.cpu_seconds() if proxy else 0.0
                res.mbps.append(received / seconds / 1e6)
                res.bytes_streamed += received
                res.proxy_cpu_stream_s += cpu1 - cpu0
                res.proxy_cpu_unary_s += cpu2 - cpu1
            log(f"  round {rnd + 1}/{args.reps}: " + "  ".join(f"{n} {results[n].mbps[-1]:.0f}" for n in order))
    finally:
        for client in clients.values():
            client.close()
    return results


# -- report -----------------------------------------------------------------------------------


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def paired_ratios(res: PathResult, baseline: PathResult) -> list[float]:
    """Throughput / the baseline's in the same round: the machine's drift between rounds cancels."""
    return [a / b for a, b in zip(res.mbps, baseline.mbps, strict=True)]


def report(results: dict[str, PathResult]) -> list[str]:
    direct, nginx = results.get("direct"), results.get("nginx")
    lines = [
        f"{'path':<18} {'MB/s':>8} {'x nginx':>8} {'p50 ms':>8} {'p99 ms':>8} {'+p50 ms':>8} "
        f"{'+p99 ms':>8} {'CPU s/GB':>9} {'CPU us/call':>11}"
    ]
    for res in results.values():
        s = res.summary()
        ratio = s["mbps_median"] / nginx.median_mbps if nginx else float("nan")
        add50 = s["p50_ms"] - direct.percentile(0.5) if direct else float("nan")
        add99 = s["p99_ms"] - direct.percentile(0.99) if direct else float("nan")
        cpu_gb = f"{s['proxy_cpu_s_per_gb']:.2f}" if res.name != "direct" else "-"
        cpu_call = f"{s['proxy_cpu_us_per_call']:.0f}" if res.name != "direct" else "-"
        lines.append(
            f"{res.name:<18} {s['mbps_median']:>8.0f} {ratio:>8.2f} {s['p50_ms']:>8.3f} "
            f"{s['p99_ms']:>8.3f} {add50:>+8.3f} {add99:>+8.3f} {cpu_gb:>9} {cpu_call:>11}"
        )
    lines.append(f"{'CPU s/GB while streaming':<26} {'proxy':>7} {'backend':>8} {'client':>7} {'total':>7}")
    for res in results.values():
        s = res.summary()
        proxy_gb = s["proxy_cpu_s_per_gb"] if res.name != "direct" else 0.0
        parts = (proxy_gb, s["backend_cpu_s_per_gb"], s["client_cpu_s_per_gb"])
        if None not in parts:
            lines.append(f"{res.name:<26} {parts[0]:>7.2f} {parts[1]:>8.2f} {parts[2]:>7.2f} {sum(parts):>7.2f}")
    if direct and nginx:
        base50 = nginx.percentile(0.5) - direct.percentile(0.5)
        for res in results.values():
            if res.name in ("direct", "nginx"):
                continue
            ratio = res.median_mbps / nginx.median_mbps
            paired = paired_ratios(res, nginx)
            add50 = res.percentile(0.5) - direct.percentile(0.5)
            ok_t = "ok" if ratio >= 1.0 else "MISS"
            ok_l = "ok" if add50 <= base50 + 0.2 else "MISS"
            lines.append(
                f"{res.name}: throughput {ratio:.2f}x nginx (target >= 1.0: {ok_t}; per round "
                f"{statistics.median(paired):.2f}x, {min(paired):.2f}-{max(paired):.2f}); added p50 "
                f"{add50:+.3f} ms vs nginx {base50:+.3f} ms (target <= nginx + 0.2 ms: {ok_l})"
            )
    for res in results.values():
        plain = results.get(res.name.removesuffix("+auth")) if res.name.endswith("+auth") else None
        if plain is not None:
            on, off = res.percentile(0.5), plain.percentile(0.5)
            on99, off99 = res.percentile(0.99), plain.percentile(0.99)
            ok = "ok" if on <= off * 1.10 else "MISS"
            lines.append(
                f"{res.name}: unary p50 {on:.3f} ms vs {off:.3f} ms without auth ({(on / off - 1) * 100:+.1f} %, "
                f"target <= +10 %: {ok}); p99 {on99:.3f} vs {off99:.3f} ms"
            )
    return lines


def environment_info() -> dict[str, Any]:
    import grpc

    def run(cmd: list[str]) -> str:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=10, check=False)
            return (out.stdout + out.stderr).strip().splitlines()[0]
        return ""

    return {
        "cpus": os.cpu_count(),
        "python": sys.version.split()[0],
        "grpcio": grpc.__version__,
        "nginx": run([shutil.which("nginx") or "/usr/sbin/nginx", "-v"]),
        "git": run(["git", "-C", str(BENCH_DIR), "rev-parse", "--short", "HEAD"]),
    }


# -- main -------------------------------------------------------------------------------------


def parse_variant(spec: str) -> tuple[str, str, dict[str, str]]:
    """``NAME=SRCDIR[:KEY=VAL,KEY=VAL]``."""
    name, _, rest = spec.partition("=")
    src, _, env = rest.partition(":")
    extra = dict(kv.split("=", 1) for kv in env.split(",") if kv)
    if not name or not src:
        raise argparse.ArgumentTypeError(f"--variant wants NAME=SRCDIR[:K=V,...], not {spec!r}")
    return name, src, extra


def parse_command(spec: str) -> tuple[str, str]:
    name, _, cmd = spec.partition("=")
    if not name or not cmd:
        raise argparse.ArgumentTypeError(f"--command wants NAME=CMD, not {spec!r}")
    return name, cmd


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Benchmark the Spark Connect relay: direct vs nginx grpc_pass vs sparkgate.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--total-mib", type=int, default=256, help="MiB per ExecutePlan stream")
    p.add_argument("--chunk-mib", type=float, default=4, help="MiB per ExecutePlanResponse")
    p.add_argument("--reps", type=int, default=5, help="measured streams per path (median reported)")
    p.add_argument("--unary", type=int, default=2000, help="measured sequential Config calls per path")
    p.add_argument("--warmup", type=int, default=300, help="unary warm-up calls per path")
    p.add_argument("--nginx-workers", default="1", help="nginx worker_processes (a number or auto)")
    p.add_argument("--no-nginx", action="store_true", help="skip the nginx path")
    p.add_argument(
        "--auth", action="store_true", help="also measure the gateway with auth on (static bearer token, audit log)"
    )
    p.add_argument(
        "--variant",
        action="append",
        default=[],
        type=parse_variant,
        metavar="NAME=SRCDIR[:K=V,...]",
        help="also measure a gateway from another source tree (with extra env vars); repeatable",
    )
    p.add_argument(
        "--command",
        action="append",
        default=[],
        type=parse_command,
        metavar="NAME=CMD",
        help="also measure any relay started by CMD ({backend} is replaced by the backend address; "
        "it must print 'READY host:port' on stdout); repeatable",
    )
    p.add_argument("--no-json", action="store_true", help=f"do not write {RESULTS_DIR}/relay-*.json")
    return p.parse_args(argv)


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    def raise_interrupt(*_: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, raise_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run(args: argparse.Namespace) -> int:
    chunk_bytes = int(args.chunk_mib * MIB)
    chunks = max(1, args.total_mib * MIB // chunk_bytes)
    children: list[Child] = []
    workdir = Path(tempfile.mkdtemp(prefix="relay-bench-"))
    started = time.monotonic()

    def started_child(pair: tuple[Child, str]) -> str:
        children.append(pair[0])
        return pair[1]

    try:
        with sigterm_as_interrupt():
            paths: dict[str, str] = {}
            proxies: dict[str, Child] = {}
            backend = started_child(start_backend(workdir, chunks, chunk_bytes))
            backend_child = children[-1]
            paths["direct"] = backend
            if not args.no_nginx:
                paths["nginx"] = started_child(start_nginx(workdir, backend, args.nginx_workers))
                proxies["nginx"] = children[-1]
            paths["sparkgate"] = started_child(start_gateway("sparkgate", workdir, backend, None, {}))
            proxies["sparkgate"] = children[-1]
            if args.auth:
                paths["sparkgate+auth"] = started_child(
                    start_gateway("sparkgate+auth", workdir, backend, None, {}, auth=True)
                )
                proxies["sparkgate+auth"] = children[-1]
            for name, src, extra in args.variant:
                paths[name] = started_child(start_gateway(name, workdir, backend, src, extra))
                proxies[name] = children[-1]
            for name, cmd in args.command:
                argv = [a.replace("{backend}", backend) for a in shlex.split(cmd)]
                child = spawn(name, argv, workdir)
                children.append(child)
                paths[name], proxies[name] = child.wait_ready_line(60), child
            log(f"paths: {paths}; {chunks} x {chunk_bytes / MIB:g} MiB per stream")
            results = measure(paths, proxies, backend_child, args)
            for child in children:
                child.check_alive()
    except KeyboardInterrupt:
        log("interrupted")
        return 130
    finally:
        for child in reversed(children):
            child.stop()
        shutil.rmtree(workdir, ignore_errors=True)

    lines = report(results)
    print("\n".join(lines))
    log(f"({time.monotonic() - started:.0f} s)")
    if not args.no_json:
        RESULTS_DIR.mkdir(exist_ok=True)
        out = RESULTS_DIR / f"relay-{time.strftime('%Y%m%d-%H%M%S')}.json"
        payload = {
            "config": {k: v for k, v in vars(args).items() if k not in ("variant", "command")}
            | {
                "variants": [list(v) for v in args.variant],
                "commands": [list(c) for c in args.command],
                "chunks": chunks,
                "chunk_bytes": chunk_bytes,
            },
            "environment": environment_info(),
            "results": {name: asdict(r) | r.summary() for name, r in results.items()},
            "report": lines,
        }
        out.write_text(json.dumps(payload, indent=2))
        log(f"wrote {out}")
    return 0


def pool(files: Sequence[str]) -> list[str]:
    """Verdicts over several runs (their ``results/relay-*.json``): one run is too noisy to decide.

    Throughput: every round's ratio to nginx in the same round, pooled over all runs; the median
    with a 95 % bootstrap interval that resamples whole runs (rounds of one run share the machine's
    state, so resampling rounds alone would make the interval too narrow; a fixed seed, so the same
    files give the same lines), and in how many runs the path's median round beat nginx. Latency:
    each run's added p50 minus nginx's, and in how many runs it was within the 0.2 ms target.
    """
    runs = [json.loads(Path(f).read_text())["results"] for f in files]
    runs = [r for r in runs if "direct" in r and "nginx" in r]
    if not runs:
        raise SystemExit("pool: no run with both a direct and an nginx path")
    names = [n for n in runs[0] if n not in ("direct", "nginx") and all(n in r for r in runs)]
    rnd = random.Random(0)
    lines = [f"{len(runs)} runs, {sum(len(r['nginx']['mbps']) for r in runs)} rounds"]
    for name in names:
        per_run = [[a / b for a, b in zip(r[name]["mbps"], r["nginx"]["mbps"], strict=True)] for r in runs]
        ratios = [x for run in per_run for x in run]
        boot = sorted(
            statistics.median([x for run in rnd.choices(per_run, k=len(per_run)) for x in run]) for _ in range(2000)
        )
        ahead = sum(statistics.median(run) > 1 for run in per_run)
        over = [r[name]["p50_ms"] - r["nginx"]["p50_ms"] for r in runs]  # added p50 minus nginx's added p50
        cpu_gb = statistics.median(r[name]["proxy_cpu_s_per_gb"] for r in runs)
        nginx_gb = statistics.median(r["nginx"]["proxy_cpu_s_per_gb"] for r in runs)
        cpu_call = statistics.median(r[name]["proxy_cpu_us_per_call"] for r in runs)
        nginx_call = statistics.median(r["nginx"]["proxy_cpu_us_per_call"] for r in runs)
        lines.append(
            f"{name}: throughput {statistics.median(ratios):.3f}x nginx per round (95 % CI "
            f"{boot[50]:.3f}-{boot[1949]:.3f}; rounds {min(ratios):.2f}-{max(ratios):.2f}; ahead in "
            f"{ahead} of {len(runs)} runs); added p50 "
            f"{statistics.median(over):+.3f} ms vs nginx's (runs {min(over):+.3f} to {max(over):+.3f}; "
            f"within +0.2 ms in {sum(o <= 0.2 for o in over)} of {len(over)}); proxy CPU "
            f"{cpu_gb:.2f} s/GB (nginx {nginx_gb:.2f}), {cpu_call:.0f} us/call (nginx {nginx_call:.0f})"
        )
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["_gateway"]:
        gateway_main(argv[1:])
        return 0
    if argv[:1] == ["pool"]:
        if len(argv) < 2 or argv[1] in ("-h", "--help"):
            print(f"usage: relay_bench.py pool RESULT.json...\n\n{pool.__doc__}")
            return 0 if len(argv) >= 2 else 2
        print("\n".join(pool(argv[1:])))
        return 0
    return run(parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
