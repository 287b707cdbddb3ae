#!/usr/bin/env python3
"""Spark benchmark: a pyspark Connect client against a real local Spark Connect driver, directly
and through sparkgate's gateway, side by side in one run.

Measures, per path:

* ``spark.range(N).toArrow()`` — rows/s and MB/s (Arrow table bytes / wall time), median of ``--reps``;
* ``spark.sql("SELECT 1").collect()`` — latency p50 / p99 over ``--sql`` calls after a warm-up.

Starts one driver with :class:`sparkgate.clusters.local.LocalProvider` (a JVM; ~10-30 s) and the
gateway in a subprocess (``relay_bench.py _gateway``) with a static provider pointing at it. The
driver is stopped at the end whatever happens (error, Ctrl-C, SIGTERM); if the provider cannot stop
it, its process group is killed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import shlex
import shutil
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from _stats import percentile
from relay_bench import (
    RESULTS_DIR,
    Child,
    environment_info,
    log,
    parse_command,
    sigterm_as_interrupt,
    spawn,
    start_gateway,
)

ROUTING = "x-doordash-team=bench;x-doordash-environment=local"


def measure(urls: dict[str, str], args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """Runs in a thread: pyspark's client is synchronous."""
    from pyspark.sql.connect.session import SparkSession

    sessions = {name: SparkSession.builder.remote(url).create() for name, url in urls.items()}
    arrow: dict[str, list[tuple[int, int, float]]] = {name: [] for name in urls}
    sql: dict[str, list[float]] = {name: [] for name in urls}
    try:
        for name, spark in sessions.items():  # warm-up: session, JIT, caches on both paths
            spark.range(min(args.rows, 1_000_000)).toArrow()
            for _ in range(args.warmup):
                spark.sql("SELECT 1").collect()
            log(f"  warm: {name}")
        order = list(sessions)
        per_round = max(1, args.sql // args.reps)
        for rnd in range(args.reps):
            for name in order[rnd % len(order) :] + order[: rnd % len(order)]:
                spark = sessions[name]
                start = time.perf_counter()
                table = spark.range(args.rows).toArrow()
                seconds = time.perf_counter() - start
                arrow[name].append((table.num_rows, table.nbytes, seconds))
                del table
                for _ in range(per_round):
                    t0 = time.perf_counter()
                    spark.sql("SELECT 1").collect()
                    sql[name].append(time.perf_counter() - t0)
            log(
                f"  round {rnd + 1}/{args.reps}: "
                + "  ".join(f"{n} {arrow[n][-1][1] / arrow[n][-1][2] / 1e6:.0f} MB/s" for n in order)
            )
    finally:
        for spark in sessions.values():
            with contextlib.suppress(Exception):
                spark.stop()

    out: dict[str, dict[str, Any]] = {}
    for name, url in urls.items():
        lat = [s * 1e3 for s in sql[name]]
        out[name] = {
            "url": url,
            "rows_per_s": statistics.median(r / s for r, _, s in arrow[name]),
            "mbps": statistics.median(b / s / 1e6 for _, b, s in arrow[name]),
            "arrow_bytes": arrow[name][0][1],
            "seconds_all": [s for _, _, s in arrow[name]],
            "sql_p50_ms": percentile(lat, 0.5),
            "sql_p99_ms": percentile(lat, 0.99),
            "sql_calls": len(lat),
        }
    return out


def report(results: dict[str, dict[str, Any]]) -> list[str]:
    direct = results["direct"]
    lines = [f"{'path':<10} {'Mrows/s':>8} {'MB/s':>7} {'x direct':>9} {'SELECT 1 p50':>13} {'p99':>8} {'+p50 ms':>8}"]
    for name, r in results.items():
        lines.append(
            f"{name:<10} {r['rows_per_s'] / 1e6:>8.2f} {r['mbps']:>7.0f} {r['mbps'] / direct['mbps']:>9.2f} "
            f"{r['sql_p50_ms']:>13.2f} {r['sql_p99_ms']:>8.2f} {r['sql_p50_ms'] - direct['sql_p50_ms']:>+8.2f}"
        )
    return lines


async def run(args: argparse.Namespace, workdir: Path, drivers: list[tuple[int, str]]) -> dict[str, dict[str, Any]]:
    from sparkgate.clusters.base import DriverSpec
    from sparkgate.clusters.local import LocalProvider
    from sparkgate.config import load_settings

    # The driver takes no token here: every path (direct, the gateway's static provider, nginx or
    # any --command relay) must reach it the same way. The gateway's token header costs nothing
    # measurable next to a Spark query.
    settings = load_settings(None, {}, state_dir=str(workdir), local={"require_token": False})
    children: list[Child] = []
    async with LocalProvider(settings.local, workdir) as provider:
        log("starting a Spark Connect driver (a JVM; this takes a while)...")
        driver = await provider.start_driver(DriverSpec())
        if driver.pid is not None:
            drivers.append((driver.pid, driver.id))
        try:
            gateway, gw_address = await asyncio.to_thread(start_gateway, "sparkgate", workdir, driver.address, None, {})
            children.append(gateway)
            urls = {
                "direct": f"sc://{driver.address}/;{ROUTING}",
                "sparkgate": f"sc://{gw_address}/;{ROUTING}",
            }
            for name, cmd in args.command:
                argv = [a.replace("{backend}", driver.address) for a in shlex.split(cmd)]
                child = spawn(name, argv, workdir)
                children.append(child)
                urls[name] = f"sc://{await asyncio.to_thread(child.wait_ready_line, 60)}/;{ROUTING}"
            log(f"paths: {urls}")
            return await asyncio.to_thread(measure, urls, args)
        finally:
            for child in reversed(children):
                await asyncio.to_thread(child.stop)
            log(f"stopping driver {driver.id}")
            await asyncio.shield(provider.stop_driver(driver))


def kill_leftovers(drivers: Sequence[tuple[int, str]]) -> None:
    """Last resort: a driver the provider did not stop (its pid is its process group id)."""
    for pid, driver_id in drivers:
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue  # gone, as it should be
        if driver_id.encode() in cmdline:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
                log(f"killed leftover driver {driver_id} (process group {pid})")


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Benchmark pyspark through sparkgate vs directly against a local Spark Connect driver.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--rows", type=int, default=10_000_000, help="rows per spark.range(N).toArrow()")
    p.add_argument(
        "--reps",
        type=int,
        default=5,
        help="rounds: each runs toArrow() once and its share of the SELECT 1 calls on every path in turn "
        "(median MB/s reported; one round measures the paths one after the other)",
    )
    p.add_argument("--sql", type=int, default=200, help='measured spark.sql("SELECT 1").collect() per path')
    p.add_argument("--warmup", type=int, default=20, help="SELECT 1 warm-up calls per path")
    p.add_argument(
        "--command",
        action="append",
        default=[],
        type=parse_command,
        metavar="NAME=CMD",
        help="also measure any relay started by CMD ({backend} is replaced by the driver address; "
        "it must print 'READY host:port' on stdout); repeatable",
    )
    p.add_argument("--no-json", action="store_true", help=f"do not write {RESULTS_DIR}/spark-*.json")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    workdir = Path(tempfile.mkdtemp(prefix="spark-bench-"))
    drivers: list[tuple[int, str]] = []
    started = time.monotonic()
    try:
        with sigterm_as_interrupt():
            results = asyncio.run(run(args, workdir, drivers))
    except KeyboardInterrupt:
        log("interrupted")
        return 130
    finally:
        kill_leftovers(drivers)
        shutil.rmtree(workdir, ignore_errors=True)
    lines = report(results)
    print("\n".join(lines))
    log(f"({time.monotonic() - started:.0f} s)")
    if not args.no_json:
        RESULTS_DIR.mkdir(exist_ok=True)
        out = RESULTS_DIR / f"spark-{time.strftime('%Y%m%d-%H%M%S')}.json"
        payload = {
            "config": {k: v for k, v in vars(args).items() if k != "command"}
            | {"commands": [list(c) for c in args.command]},
            "environment": environment_info(),
            "results": results,
            "report": lines,
        }
        out.write_text(json.dumps(payload, indent=2))
        log(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
