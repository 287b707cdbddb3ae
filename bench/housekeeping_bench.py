"""How long calls wait for the gateway's housekeeping: the sweep of session routes.

With N live sessions, every route touched since the last sweep (all busy), one sweep runs while a
task stands in for calls: it wakes every millisecond and records how late it woke. The longest wait
is what a call could wait for housekeeping. Compared with the sweep of the build before it was
sliced (``--before SRCDIR``: the same measurement from another source tree, in a child process).

    python bench/housekeeping_bench.py --sessions 100000
    python bench/housekeeping_bench.py --sessions 100000 --before /tmp/before/src
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


async def measure(kind: str, sessions: int) -> dict[str, float]:
    from sparkgate.gateway.affinity import MemoryAffinityStore, Route
    from sparkgate.gateway.affinity_sqlite import SqliteAffinityStore

    with tempfile.TemporaryDirectory() as tmp:
        store = MemoryAffinityStore() if kind == "memory" else SqliteAffinityStore(Path(tmp) / "routes.db")
        async with store:
            now = time.time()
            for i in range(sessions):
                MemoryAffinityStore._add(store, Route("u", f"s{i}", "d1", "x", "fe", "prod", last_used=now - 100))
            for i in range(sessions):
                store.touch(("u", f"s{i}"), now)
            worst, stop = 0.0, False

            async def calls() -> None:
                nonlocal worst
                while not stop:
                    t = time.perf_counter()
                    await asyncio.sleep(0.001)
                    worst = max(worst, time.perf_counter() - t - 0.001)

            ticker = asyncio.ensure_future(calls())
            await asyncio.sleep(0.01)
            t0 = time.perf_counter()
            await store.sweep(now - 30)
            took = time.perf_counter() - t0
            stop = True
            await ticker
    return {"worst_wait_ms": worst * 1000, "sweep_ms": took * 1000}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sessions", type=int, default=100_000)
    ap.add_argument("--before", help="another source tree to measure the same way")
    ap.add_argument("--_child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args._child:
        print(json.dumps(asyncio.run(measure(args._child, args.sessions))))
        return
    rows = []
    for label, src in (("this build", None), ("before", args.before)):
        if label == "before" and not src:
            continue
        for kind in ("memory", "sqlite"):
            env = dict(os.environ, PYTHONPATH=src) if src else dict(os.environ)
            cmd = [sys.executable, __file__, "--sessions", str(args.sessions), "--_child", kind]
            out = json.loads(subprocess.run(cmd, capture_output=True, text=True, env=env, check=True).stdout)
            rows.append((label, kind, out["worst_wait_ms"], out["sweep_ms"]))
    print(f"{args.sessions} sessions, all touched since the last sweep")
    print(f"{'build':12} {'store':8} {'longest wait of a call':>24} {'sweep took':>12}")
    for label, kind, worst, took in rows:
        print(f"{label:12} {kind:8} {worst:21.1f} ms {took:9.0f} ms")


if __name__ == "__main__":
    main()
