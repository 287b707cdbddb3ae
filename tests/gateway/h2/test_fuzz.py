"""Short runs of the fuzz targets in fuzz/ (longer runs by hand: see each target's doc)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from sparkgate.gateway.h2 import frames as f
from tests.gateway.h2.test_connection import request_headers

pytest.importorskip("atheris", reason="the fuzz targets need atheris (pip install -e '.[dev]')")

ROOT = Path(__file__).resolve().parents[3]


def seeds() -> list[bytes]:
    """Well-formed client traffic for the parser target to start from (a byte of read sizes first)."""
    block = request_headers()
    message = b"\x00\x00\x00\x00\x05" + b"hello"
    call = f.frame(f.HEADERS, f.END_HEADERS, 1, block) + f.frame(f.DATA, f.END_STREAM, 1, message)
    return [
        b"\x00" + f.settings_frame([(f.SETTINGS_INITIAL_WINDOW_SIZE, 1 << 20)]) + call,
        b"\x00" + f.frame(f.PING, 0, 0, b"12345678") + f.frame(f.WINDOW_UPDATE, 0, 0, b"\x00\x00\x10\x00"),
        b"\x00" + f.frame(f.HEADERS, 0, 1, block[:6]) + f.frame(f.CONTINUATION, f.END_HEADERS, 1, block[6:]),
        b"\x02\x03\x05" + call + f.rst_stream_frame(1, 8) + f.frame(f.PRIORITY, 0, 3, b"\x00\x00\x00\x01\x10"),
    ]


@pytest.mark.parametrize("target", ["h2_parser", "hpack_decoder"])
def test_fuzz_target_finds_nothing_in_a_short_run(tmp_path: Path, target: str) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for i, seed in enumerate(seeds()):
        (corpus / f"seed-{i}").write_bytes(seed)
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", ""))
    done = subprocess.run(
        [sys.executable, str(ROOT / "fuzz" / f"{target}.py"), str(corpus), "-max_total_time=8", "-seed=1"],
        cwd=tmp_path,  # where a crash would be written
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    assert "Done " in done.stderr
