"""``housekeeping_bench.py``: it runs, and prints the longest wait of a call for each store."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench" / "housekeeping_bench.py"


def test_it_measures_both_stores() -> None:
    out = subprocess.run(
        [sys.executable, str(BENCH), "--sessions", "3000"], capture_output=True, text=True, check=True, timeout=120
    ).stdout
    assert "3000 sessions" in out
    assert [line.split()[2] for line in out.splitlines()[2:]] == ["memory", "sqlite"]
