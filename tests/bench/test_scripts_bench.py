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


def test_it_runs_the_named_benchmark() -> None:
    out = subprocess.run(
        [ROOT / "scripts" / "bench", "housekeeping_bench", "--help"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={"PYTHON": sys.executable, "PATH": "/usr/local/bin:/usr/bin:/bin", "SPARKGATE_BENCH_SETUP": "0"},
    )
    assert out.returncode == 0, out.stderr
    assert "usage:" in out.stdout
