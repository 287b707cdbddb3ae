"""Time to first result for a new session: from a warm pool vs. cold (a driver must start).

    python bench/pool_bench.py              # ~4 min: 10 warm and 4 cold sessions
    python bench/pool_bench.py --warm 5 --cold 2

A new session here is ``SparkSession.builder.remote(url).create()`` followed by ``SELECT 1`` —
what a notebook's first cell costs. Each measured session uses a new team, so it needs a driver
of its own: the **warm** run takes it from the pool (which then refills in the background; the
refill time is measured too), the **cold** run has no pool and waits for a driver to start.
After each session its driver is stopped, so memory stays bounded. The resident memory of each
idle warm driver (its JVM's RSS) is reported as well.

The gateway runs in this process on its own event-loop thread (pyspark's client is synchronous).
"""

from __future__ import annotations

import argparse
import gc
import statistics
import tempfile
import time
from pathlib import Path

from _platform import PlatformThread
from _stats import percentile


class PoolPlatform(PlatformThread):
    """Gateway and a warm pool of ``pool_size`` (runner off); one session per driver."""

    def __init__(self, state_dir: Path, pool_size: int) -> None:
        super().__init__(
            state_dir,
            runner={"enabled": False},
            pool={"size": pool_size, "sessions_per_driver": 1},
            local={"max_drivers": 3},
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--warm", type=int, default=10, help="sessions measured from a warm pool (default 10)")
    ap.add_argument("--cold", type=int, default=4, help="sessions measured with no pool (default 4)")
    args = ap.parse_args()
    gc.disable()  # keep pyspark finalizers off the gateway's loop thread (see tests/e2e/conftest.py)

    warm: list[float] = []
    refill: list[float] = []
    rss: list[float] = []
    with tempfile.TemporaryDirectory(prefix="pool-bench-") as tmp:
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

        cold: list[float] = []
        p = PoolPlatform(Path(tmp) / "cold", pool_size=0)
        try:
            for i in range(args.cold):
                cold.append(first_result(p.url(f"cold-{i}")))
                p.stop_team_drivers()
                gc.collect()
                print(f"  cold {i + 1}/{args.cold}: {cold[-1]:.2f} s", flush=True)
        finally:
            p.close()

    w50, c50 = statistics.median(warm), statistics.median(cold)
    print()
    print(f"{'new session + SELECT 1':<28} {'p50 s':>8} {'p90 s':>8} {'n':>4}")
    print(f"{'from the warm pool':<28} {w50:>8.3f} {percentile(warm, 0.9):>8.3f} {len(warm):>4}")
    print(f"{'cold (driver starts)':<28} {c50:>8.2f} {percentile(cold, 0.9):>8.2f} {len(cold):>4}")
    print(f"cold/warm: {c50 / w50:.0f}x   (targets: warm <= 0.5 s, cold/warm >= 20x)")
    print(f"pool refill after a claim: p50 {statistics.median(refill):.1f} s")
    if rss:
        print(f"idle warm driver RSS: {statistics.median(rss):.0f} MiB (JVM, driver_memory 2g)")


if __name__ == "__main__":
    main()
