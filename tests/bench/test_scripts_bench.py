"""``scripts/bench``: runs one benchmark by name, after installing what it needs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_without_a_script_it_names_the_benchmarks() -> None:
    out = subprocess.run([ROOT / "scripts" / "bench"], capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 2
    assert "usage: scripts/bench SCRIPT" in out.stderr
    assert "relay_bench.py" in out.stderr and "pool_bench.py" in out.stderr


def bench(*args: str) -> subprocess.CompletedProcess[str]:
    env = {"PYTHON": sys.executable, "PATH": "/usr/local/bin:/usr/bin:/bin", "SPARKGATE_BENCH_SETUP": "0"}
    return subprocess.run(
        [ROOT / "scripts" / "bench", *args], capture_output=True, text=True, timeout=300, check=False, env=env
    )


def test_it_runs_the_named_benchmark_however_it_is_named() -> None:
    for name in ("housekeeping_bench", "housekeeping_bench.py", "bench/housekeeping_bench.py"):
        out = bench(name, "--help")
        assert out.returncode == 0, out.stderr
        assert "usage:" in out.stdout


def test_an_unknown_benchmark_is_named_in_the_error() -> None:
    out = bench("nosuch_bench.py")
    assert out.returncode == 2
    assert "no benchmark bench/nosuch_bench.py" in out.stderr and "relay_bench.py" in out.stderr
