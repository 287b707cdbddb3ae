#!/usr/bin/env python3
"""Workers benchmark: aggregate unary calls/s and stream MB/s of several concurrent clients through
nginx with 1 and 2 worker processes and sparkgate with 1 and 2 gateway workers, side by side.

One gateway process is one event loop on one core; ``sparkgate gateway --workers N`` runs N of
them on one port (``SO_REUSEPORT``), each a replica sharing sessions through Redis. Here each
worker is started the way ``--workers`` starts it (``gateway.reuse_port`` on, ``state.backend:
redis``), without the supervisor, which takes no part in relaying. nginx gets the same number of
``worker_processes``.

Load: ``--clients`` client processes, each with its own connection (the kernel spreads
connections over the workers), first calling ``Config`` as fast as they can for ``--seconds``,
then streaming ``ExecutePlan`` results (``--total-mib`` each) for ``--seconds``. Paths are
measured in interleaved rounds (a new seeded order each round); medians over ``--rounds`` are
reported with each path's ratio to nginx with as many workers. On a 2-core machine the clients
and the fake backend share the cores with the proxy: the ratios, not the absolute numbers, are
the result. Run: ``python bench/workers_bench.py``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import relay_bench as rb

from sparkgate.testing.redis import TempRedis


def _client(address: str, mode: str, seconds: float, start_at: float, out: Any) -> None:
    """One client process: ``mode`` calls until ``seconds`` have passed; sends (count, bytes)."""
    client = rb.Client(address)
    try:
        client.unary()  # connected and routed before the clock starts
        while time.time() < start_at:
            time.sleep(0.001)
        deadline = time.perf_counter() + seconds
        calls = received = 0
        while time.perf_counter() < deadline:
            if mode == "unary":
                client.unary()
            else:
                received += client.stream()[0]
            calls += 1
        out.put((calls, received))
    finally:
        client.close()


def load(address: str, mode: str, clients: int, seconds: float) -> tuple[float, float]:
    """(calls/s, MB/s) of ``clients`` processes together."""
    ctx = mp.get_context("spawn")
    out: Any = ctx.Queue()
    start_at = time.time() + 2.0  # after every client has connected
    procs = [ctx.Process(target=_client, args=(address, mode, seconds, start_at, out)) for _ in range(clients)]
    for p in procs:
        p.start()
    results = [out.get(timeout=seconds + 120) for _ in procs]
    for p in procs:
        p.join(30)
    calls = sum(r[0] for r in results)
    received = sum(r[1] for r in results)
    return calls / seconds, received / seconds / 1e6


def start_sparkgate(workdir: Path, name: str, backend: str, workers: int, redis_url: str) -> tuple[list[rb.Child], str]:
    port = rb.free_port()
    args = ["--port", str(port), "--reuse-port", "--redis", redis_url]
    children = [rb.start_gateway(f"{name}-{i}", workdir, backend, None, {}, args=args)[0] for i in range(workers)]
    return children, f"127.0.0.1:{port}"


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--clients", type=int, default=4, help="concurrent client processes (default 4)")
    p.add_argument("--seconds", type=float, default=5.0, help="seconds of load per path, mode and round (default 5)")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    p.add_argument("--total-mib", type=int, default=64, help="MiB per ExecutePlan stream (default 64)")
    p.add_argument("--no-json", action="store_true", help=f"do not write {rb.RESULTS_DIR}/workers-*.json")
    args = p.parse_args(argv)

    workdir = Path(tempfile.mkdtemp(prefix="workers-bench-"))
    children: list[rb.Child] = []
    results: dict[str, dict[str, list[float]]] = {}
    try:
        with TempRedis() as redis_url:
            chunk = 4 * rb.MIB
            backend_child, backend = rb.start_backend(workdir, max(1, args.total_mib * rb.MIB // chunk), chunk)
            children.append(backend_child)
            paths: dict[str, str] = {}
            for n in (1, 2):
                nginx_dir = workdir / f"n{n}"
                nginx_dir.mkdir()
                child, address = rb.start_nginx(nginx_dir, backend, str(n))
                children.append(child)
                paths[f"nginx x{n}"] = address
                gateways, address = start_sparkgate(workdir, f"sparkgate{n}", backend, n, redis_url)
                children += gateways
                paths[f"sparkgate x{n}"] = address
            rb.log(f"paths: {paths}; {args.clients} clients, {args.seconds:g} s per measurement")
            order = list(paths)
            shuffle = random.Random(0).shuffle
            for rnd in range(args.rounds):
                shuffle(order)
                for name in order:
                    calls, _ = load(paths[name], "unary", args.clients, args.seconds)
                    _, mbps = load(paths[name], "stream", args.clients, args.seconds)
                    r = results.setdefault(name, {"calls_per_s": [], "mbps": []})
                    r["calls_per_s"].append(calls)
                    r["mbps"].append(mbps)
                    rb.log(f"  round {rnd + 1}/{args.rounds} {name}: {calls:.0f} calls/s, {mbps:.0f} MB/s")
                for child in children:
                    child.check_alive()
    finally:
        for child in reversed(children):
            child.stop()
        shutil.rmtree(workdir, ignore_errors=True)

    lines = [f"{'path':<14} {'calls/s':>9} {'x nginx':>8} {'MB/s':>8} {'x nginx':>8}"]
    for name in sorted(results, key=lambda n: (n[-1], n)):
        r = results[name]
        base = results[f"nginx x{name[-1]}"]
        calls, mbps = statistics.median(r["calls_per_s"]), statistics.median(r["mbps"])
        lines.append(
            f"{name:<14} {calls:>9.0f} {calls / statistics.median(base['calls_per_s']):>7.2f}x "
            f"{mbps:>8.0f} {mbps / statistics.median(base['mbps']):>7.2f}x"
        )
    print("\n".join(lines))
    if not args.no_json:
        rb.RESULTS_DIR.mkdir(exist_ok=True)
        out = rb.RESULTS_DIR / f"workers-{time.strftime('%Y%m%d-%H%M%S')}.json"
        payload = {"config": vars(args), "environment": rb.environment_info(), "results": results, "report": lines}
        out.write_text(json.dumps(payload, indent=2))
        rb.log(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
