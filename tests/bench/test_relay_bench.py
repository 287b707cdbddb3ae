"""``relay_bench.py pool``: the verdicts over several runs' results."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


@pytest.fixture(scope="module")
def relay_bench() -> Any:
    sys.path.insert(0, str(BENCH))  # the bench scripts import their siblings
    try:
        import relay_bench

        yield relay_bench
    finally:
        sys.path.remove(str(BENCH))


def path(mbps: list[float], p50_ms: float) -> dict[str, Any]:
    return {"mbps": mbps, "p50_ms": p50_ms, "proxy_cpu_s_per_gb": 0.4, "proxy_cpu_us_per_call": 200.0}


def write_run(tmp_path: Path, name: str, gateway: list[float], nginx: list[float], p50_ms: float) -> str:
    results = {
        "direct": path([2000.0] * len(nginx), 0.5),
        "nginx": path(nginx, 0.7),
        "sparkgate": path(gateway, p50_ms),
    }
    out = tmp_path / f"relay-{name}.json"
    out.write_text(json.dumps({"results": results}))
    return str(out)


def test_pool_gives_pooled_ratios_runs_ahead_and_latency_margins(relay_bench: Any, tmp_path: Path) -> None:
    files = [
        write_run(tmp_path, "a", [1100.0, 1100.0, 1100.0], [1000.0, 1000.0, 1000.0], 0.8),  # 1.1x, +0.1 ms
        write_run(tmp_path, "b", [950.0, 950.0, 950.0], [1000.0, 1000.0, 1000.0], 1.0),  # 0.95x, +0.3 ms
        write_run(tmp_path, "c", [1200.0, 1200.0, 1200.0], [1000.0, 1000.0, 1000.0], 0.85),  # 1.2x, +0.15 ms
    ]
    head, line = relay_bench.pool(files)
    assert head == "3 runs, 9 rounds"
    assert line.startswith("sparkgate: throughput 1.100x nginx per round")
    assert "ahead in 2 of 3 runs" in line
    assert "rounds 0.95-1.20" in line
    assert "within +0.2 ms in 2 of 3" in line
    assert relay_bench.pool(files) == [head, line]  # a fixed seed: the same files, the same lines


def test_the_interval_resamples_whole_runs(relay_bench: Any, tmp_path: Path) -> None:
    # Two runs that disagree, many rounds each: resampling single rounds would give a narrow
    # interval around 1.0; resampling runs shows the pooled median may be either run's.
    files = [
        write_run(tmp_path, "low", [900.0] * 11, [1000.0] * 11, 0.8),
        write_run(tmp_path, "high", [1100.0] * 11, [1000.0] * 11, 0.8),
    ]
    line = relay_bench.pool(files)[1]
    assert "(95 % CI 0.900-1.100;" in line
