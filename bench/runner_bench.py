"""Submit → COMPLETED for a sample manifest: on a warm driver vs. on a driver of its own.

    python bench/runner_bench.py             # ~3 min: 5 jobs each way
    python bench/runner_bench.py --jobs 3

The whole local platform runs in this process (gateway, one warm driver, the runner with its
SQLite store). Each job is ``src/sparkgate/runner/samples/daily_orders.yaml`` (two sample-catalog
tables joined, aggregated, written as Parquet, 100-row preview and count). The time is from the
runner's Submit to the job's COMPLETED in the store, as ``sparkgate submit --follow`` would see it.

* **pool** — the job program runs as a Spark Connect client of the team's warm driver (the first
  job claims it from the pool; it is reported apart, as it is the first on that driver);
* **own** — ``spark-submit`` of the job program: a new driver JVM per job.

Target (issue 5): warm driver p50 <= 3 s.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from _platform import PlatformThread

SAMPLE = Path(__file__).resolve().parents[1] / "src" / "sparkgate" / "runner" / "samples" / "daily_orders.yaml"


class RunnerPlatform(PlatformThread):
    """Gateway, one warm driver and the runner (one job at a time)."""

    def __init__(self, state_dir: Path) -> None:
        super().__init__(state_dir, timeout=600, runner={"port": 0, "max_running": 1}, pool={"size": 1})
        self.run(self.platform.clusters.wait_pool_ready(timeout=300), timeout=310)

    def job(self, driver: str) -> float:
        runner = self.platform.runner
        assert runner is not None
        text = SAMPLE.read_text()
        start = time.perf_counter()
        job = self.run(runner.submit(text, environment="local", user="bench@example.com", options={"driver": driver}))

        async def done() -> Any:
            while True:
                j = await asyncio.to_thread(runner.store.get, job.id)
                if j.done:
                    return j
                await asyncio.sleep(0.02)

        finished = self.run(done())
        seconds = time.perf_counter() - start
        if finished.state != "COMPLETED":
            raise SystemExit(f"job {job.id} {finished.state}: {finished.error}")
        return seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--jobs", type=int, default=5, help="jobs measured each way (default 5)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="runner-bench-") as d:
        print("starting the platform (gateway, one warm driver, runner) ...", flush=True)
        p = RunnerPlatform(Path(d))
        try:
            first = p.job("pool")
            print(f"  pool job 0 (claims the warm driver): {first:.2f} s", flush=True)
            pool = []
            for i in range(args.jobs):
                pool.append(p.job("pool"))
                print(f"  pool job {i + 1}: {pool[-1]:.2f} s", flush=True)
            own = []
            for i in range(args.jobs):
                own.append(p.job("own"))
                print(f"  own-driver job {i + 1}: {own[-1]:.2f} s", flush=True)
        finally:
            p.close()
    print()
    print(f"{'where':<22} {'p50 s':>7} {'min s':>7} {'max s':>7}")
    for name, xs in (("warm driver (pool)", pool), ("own driver", own)):
        print(f"{name:<22} {statistics.median(xs):>7.2f} {min(xs):>7.2f} {max(xs):>7.2f}")
    ok = "ok" if statistics.median(pool) <= 3.0 else "MISS"
    print(
        f"first pool job {first:.2f} s; own/pool = {statistics.median(own) / statistics.median(pool):.1f}x; "
        f"target warm p50 <= 3 s: {ok}"
    )


if __name__ == "__main__":
    main()
