"""Time to first result for a new session: from a warm pool vs. cold (a driver must start), and
cold starts with and without the class-data archive, side by side.

    python bench/pool_bench.py              # ~12 min: 10 warm sessions, 5 cold pairs, 5 start pairs
    python bench/pool_bench.py --warm 5 --cold 3

A new session here is ``SparkSession.builder.remote(url).create()`` followed by ``SELECT 1`` —
what a notebook's first cell costs. Each measured session uses a new team, so it needs a driver
of its own: the **warm** run takes it from the pool (which then refills in the background; the
refill time is measured too), the **cold** runs have no pool and wait for a driver to start. The
cold runs and the **platform starts** (``sparkgate up`` until its warm pool is ready) are measured
in pairs, in alternating order so that load from elsewhere hits both alike: one on the baseline
start path (no class-data archive, ``local.class_archive: false``; every driver warmed up by a
client; readiness found by a gRPC channel's reconnects) and one on the new path. The archive is built first (in a
cache directory of the run's own). After each session its driver is stopped, so memory stays
bounded. The resident memory of each idle warm driver (its JVM's RSS) is reported as well.

The gateway runs in this process on its own event-loop thread (pyspark's client is synchronous).
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import tempfile
import time
from pathlib import Path

from _platform import PlatformThread
from _stats import percentile


class PoolPlatform(PlatformThread):
    """Gateway and a warm pool of ``pool_size`` (runner off); one session per driver."""

    def __init__(self, state_dir: Path, pool_size: int, *, class_archive: bool = True) -> None:
        super().__init__(
            state_dir,
            runner={"enabled": False},
            pool={"size": pool_size, "sessions_per_driver": 1},
            local={"max_drivers": 3, "class_archive": class_archive},
        )

    def url(self, team: str) -> str:
        return f"sc://127.0.0.1:{self.platform.gateway.port}/;x-doordash-team={team};x-doordash-environment=local"

    def stop_team_drivers(self) -> None:
        async def stop() -> None:
            cm = self.platform.clusters
            for d in [d for d in cm.drivers() if d.namespace]:
                cm._drivers.pop(d.id, None)
                await cm.provider.stop_driver(d)

        self.run(stop())


def first_result(url: str) -> float:
    import pyspark.sql

    t0 = time.perf_counter()
    spark = pyspark.sql.SparkSession.builder.remote(url).create()
    assert spark.sql("SELECT 1 AS one").first().one == 1
    elapsed = time.perf_counter() - t0
    spark.stop()
    return elapsed


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def new_start_path(on: bool) -> None:
    """The start path measured (``on``), or the baseline: no class-data archive, every driver
    warmed up by a client before it is ready, readiness found by a gRPC channel's reconnects."""
    from sparkgate.clusters.local import LocalProvider

    LocalProvider.quick_start = on


def started(state_dir: Path, class_archive: bool) -> float:
    """Seconds from a platform's start to its warm pool of one ready (``sparkgate up``)."""
    t0 = time.perf_counter()
    p = PoolPlatform(state_dir, pool_size=1, class_archive=class_archive)
    try:
        p.run(p.platform.clusters.wait_pool_ready(timeout=300))
        return time.perf_counter() - t0
    finally:
        p.close()


def cold_session(state_dir: Path, team: str, class_archive: bool) -> float:
    """A new team's first result with no warm pool: its driver starts for it."""
    p = PoolPlatform(state_dir, pool_size=0, class_archive=class_archive)
    try:
        return first_result(p.url(team))
    finally:
        p.stop_team_drivers()
        p.close()


def build_archive(state_dir: Path) -> None:
    p = PoolPlatform(state_dir, pool_size=1)
    try:
        p.run(p.platform.clusters.wait_pool_ready(timeout=300))
        built = p.run(p.platform.clusters.provider.class_archive_built())  # type: ignore[attr-defined]
        print(f"  class-data archive built: {built}", flush=True)
    finally:
        p.close()


def row(label: str, values: list[float], digits: int = 2) -> str:
    return (
        f"{label:<34} {statistics.median(values):>8.{digits}f} {percentile(values, 0.9):>8.{digits}f} {len(values):>4}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--warm", type=int, default=10, help="sessions measured from a warm pool (default 10)")
    ap.add_argument("--cold", type=int, default=5, help="pairs of cold sessions and of platform starts (default 5)")
    args = ap.parse_args()
    gc.disable()  # keep pyspark finalizers off the gateway's loop thread (see tests/e2e/conftest.py)

    warm: list[float] = []
    refill: list[float] = []
    rss: list[float] = []
    cold: dict[bool, list[float]] = {False: [], True: []}
    up: dict[bool, list[float]] = {False: [], True: []}
    with tempfile.TemporaryDirectory(prefix="pool-bench-") as tmp:
        os.environ["XDG_CACHE_HOME"] = str(Path(tmp) / "cache")  # (an archive of this run's own)
        build_archive(Path(tmp) / "build")
        p = PoolPlatform(Path(tmp) / "warm", pool_size=1)
        try:
            for i in range(args.warm):
                p.run(p.platform.clusters.wait_pool_ready(timeout=300))
                for d in p.platform.clusters.warm():
                    if d.pid:
                        rss.append(rss_mib(d.pid))
                warm.append(first_result(p.url(f"warm-{i}")))
                t0 = time.perf_counter()
                p.stop_team_drivers()
                gc.collect()
                p.run(p.platform.clusters.wait_pool_ready(timeout=300))
                refill.append(time.perf_counter() - t0)
                print(f"  warm {i + 1}/{args.warm}: {warm[-1]:.3f} s (pool refilled in {refill[-1]:.1f} s)", flush=True)
        finally:
            p.close()

        for i in range(args.cold):
            for archive in (False, True) if i % 2 == 0 else (True, False):
                new_start_path(archive)
                cold[archive].append(cold_session(Path(tmp) / f"cold-{i}-{archive}", f"cold-{i}", archive))
                gc.collect()
                up[archive].append(started(Path(tmp) / f"up-{i}-{archive}", archive))
                gc.collect()
                what = "new start path" if archive else "baseline      "
                print(
                    f"  cold {i + 1}/{args.cold} {what}: {cold[archive][-1]:.2f} s; up in {up[archive][-1]:.1f} s",
                    flush=True,
                )

    print()
    print(f"{'new session + SELECT 1':<34} {'p50 s':>8} {'p90 s':>8} {'n':>4}")
    print(row("from the warm pool", warm, 3))
    print(row("cold, baseline", cold[False]))
    print(row("cold, new start path", cold[True]))
    print(row("platform ready, baseline", up[False], 1))
    print(row("platform ready, new start path", up[True], 1))
    c0, c1 = statistics.median(cold[False]), statistics.median(cold[True])
    print(f"cold new/baseline: {c1 / c0:.2f}x   (targets: <= 0.5x and <= 8 s; warm <= 0.35 s; ready <= 12 s)")
    print(f"pool refill after a claim: p50 {statistics.median(refill):.1f} s")
    if rss:
        print(f"idle warm driver RSS: {statistics.median(rss):.0f} MiB (JVM, driver_memory 2g)")


if __name__ == "__main__":
    main()
